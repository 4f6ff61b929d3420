"""The report's figures as palette PNGs: accuracy and perplexity against measured speedup (paper Fig. 5), pruning
time against accuracy (Fig. 6), the pruning pattern (Fig. 7), estimated against measured speedup.  Each method has
the same colour, marker and label in every figure."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from sprint.io import atomic_write_bytes
from sprint.layout import point_label, point_name
from sprint.report.load import ModelResults
from sprint.report.names import NAMES, at_setting, method_name, order_methods, order_points, sort_rows, target_label
from sprint.report.tables import aggregate, error_bar

COLOURS = {"attn": "#f28e2b", "mlp": "#4e79a7", "pruned": "#a0a0a0"}
# One colour per method: matplotlib's ten, then three more, one for each method of the registry (dense is black).
PALETTE = [*(f"C{i}" for i in range(10)), "#393b79", "#7f0000", "#e7298a"]


def _style(method: str) -> dict[str, str]:
    """Fixed colour, marker and label per method, the same in every figure."""
    i = list(NAMES).index(method) if method in NAMES else len(NAMES)
    return {"color": PALETTE[i % len(PALETTE)], "marker": "os^DvPXph"[i % 9], "label": method_name(method)}


def _by_method(df: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    for m in order_methods(df["method"]):
        yield m, df[df["method"] == m]


def _save(fig: Figure, path: Path) -> Path:
    """The figure as a PNG with a 256-colour palette: a plot has few colours, the palette looks the same and the file
    is about a third of the full-colour one (the study commits its report's figures)."""
    from PIL import Image

    FigureCanvasAgg(fig)
    buf, out = io.BytesIO(), io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, "PNG",
                                                                                               optimize=True)
    return atomic_write_bytes(path, out.getvalue())


ERROR_BARS = "error bars: one seed, accuracy stderr{}; several seeds, std over seeds"


def _bars(rows: list[dict[str, Any]], col: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``col`` and their (2, n) lower / upper errors (:func:`~sprint.report.tables.error_bar`; 0 where
    unknown) for errorbar()."""
    bars = np.array([error_bar(r, col)[:3] for r in rows], dtype=float).reshape(-1, 3)
    return bars[:, 0], np.nan_to_num(bars[:, 1:].T)


def plot_metric_speedup(m: ModelResults, path: Path, col: str = "mean_accuracy") -> Path | None:
    """Fig. 5: mean accuracy (or WikiText-2 perplexity, ``col="wikitext2_ppl"``) vs measured speedup, one line per
    method, dense star at its measured speedup (≈ 1).

    Error bars: accuracy stderr or perplexity 95 % CI (vertical) and speedup 95 % CI (horizontal) for one seed, std
    over seeds otherwise.
    """
    ppl = col == "wikitext2_ppl"
    runs = pd.concat([m.dense, m.runs]).dropna(subset=["measured_speedup", col])
    if runs.empty:
        return None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    labels: list[tuple[str, float, float, str]] = []
    for method, g in _by_method(aggregate(runs, ["measured_speedup", col])):
        rows = sorted(g.to_dict("records"), key=lambda r: r["measured_speedup_mean"])
        (x, xerr), (y, yerr) = _bars(rows, "measured_speedup"), _bars(rows, col)
        style = ({"marker": "*", "ms": 16, "color": "black", "label": "Dense"} if method == "dense"
                 else {"ms": 7, **_style(method)})
        settings = at_setting(method)  # points at settings, not along a speedup: no line, each one labelled
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, capsize=3, **style, **({"ls": "none"} if settings else {}))
        labels += [(point_label(r["point"]), xi, yi, style["color"]) for r, xi, yi in zip(rows, x, y) if settings]
    left, right = ax.get_xlim()
    for text, xi, yi, colour in labels:  # a label near the right edge goes to the left of its point, inside the axes
        flip = xi > left + 0.75 * (right - left)
        ax.annotate(text, (xi, yi), xytext=(-6 if flip else 6, 3), textcoords="offset points", fontsize=7,
                    color=colour, ha="right" if flip else "left")
    what = "WikiText-2 perplexity (lower is better)" if ppl else "mean zero-shot accuracy (%)"
    bars = ("error bars: one seed, perplexity and speedup 95% CI; several seeds, std over seeds" if ppl
            else ERROR_BARS.format(" and speedup 95% CI"))
    log_scale = ppl and runs[col].max() > 5 * runs[col].min()  # one collapsed model would flatten all the others
    ax.set(xlabel="measured speedup (×)", ylabel=what + (", log scale" if log_scale else ""),
           title=f"{m.name}: {'perplexity' if ppl else 'accuracy'} vs speedup\n({bars})")
    if log_scale:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 20, 50, 100, 200 rather than 2 × 10^1
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # beside the axes: never over a point
    return _save(fig, path)


def plot_time_accuracy(m: ModelResults, path: Path) -> Path | None:
    """Fig. 6: pruning time (log x) vs mean accuracy, one panel per target speedup (and weight setting), one point
    per method."""
    runs = m.runs.dropna(subset=["pruning_time_s", "mean_accuracy"])
    targets = order_points(runs["point"])
    if not targets:
        return None
    points = aggregate(runs, ["pruning_time_s", "mean_accuracy"])
    ncols = min(len(targets), 3)
    nrows = math.ceil(len(targets) / ncols)
    fig = Figure(figsize=(4.5 * ncols + 1.6, 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    for ax, target in zip(axes, targets):
        for method, g in _by_method(points[points["point"] == target]):
            rows = g.to_dict("records")
            (x, xerr), (y, yerr) = _bars(rows, "pruning_time_s"), _bars(rows, "mean_accuracy")
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, ms=8, capsize=3, **_style(method))
        if not m.dense.empty:
            ax.axhline(m.dense["mean_accuracy"].iloc[0], ls="--", color="black", lw=1, label="Dense")
        title = f"target {point_label(target)}" if target.startswith("x") else f"setting {point_label(target)}"
        ax.set(xscale="log", xlabel="pruning time (s, log scale)", title=title)
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
    for ax in axes[: len(axes): ncols]:
        ax.set_ylabel("mean zero-shot accuracy (%)")
    for ax in axes[len(targets):]:
        ax.set_visible(False)
    handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside right upper")
    fig.suptitle(f"{m.name}: pruning time vs accuracy\n({ERROR_BARS.format('')})")
    return _save(fig, path)


def plot_pattern(m: ModelResults, target: float, path: Path) -> Path | None:
    """Fig. 7: kept/pruned sublayers, one row per method (its first seed), 2 cells per layer (attention, MLP).

    Pruned cells carry their removal order.
    """
    sel = m.runs[(m.runs["point"] == point_name(target)) & m.runs["num_layers"].notna()]
    if sel.empty:
        return None
    first = sort_rows(sel.sort_values("seed").groupby("method").head(1))
    n_layers = int(first["num_layers"].max())
    grid = np.tile(np.arange(2 * n_layers) % 2 + 1, (len(first), 1))  # 0 pruned, 1 attention, 2 MLP
    fig = Figure(figsize=(min(max(7.0, 0.22 * 2 * n_layers + 2.5), 30), 1.4 + 0.45 * len(first)))
    ax = fig.add_subplot()
    for i, removed in enumerate(first["removed"]):
        for order, (layer, kind) in enumerate(removed, 1):
            grid[i, 2 * layer + (kind == "mlp")] = 0
            ax.text(2 * layer + (kind == "mlp"), i, str(order), ha="center", va="center", fontsize=7, color="white")
    ax.imshow(grid, cmap=ListedColormap([COLOURS["pruned"], COLOURS["attn"], COLOURS["mlp"]]), vmin=0, vmax=2,
              aspect="auto", interpolation="nearest")
    step = max(1, n_layers // 32)
    layers = np.arange(0, n_layers, step)
    ax.set_xticks(2 * layers + 0.5, labels=layers.astype(str), fontsize=8)
    ax.set_yticks(range(len(first)), labels=[f"{method_name(r.method)} (seed {r.seed})" for r in first.itertuples()])
    ax.set_xticks(np.arange(0, 2 * n_layers + 1, 2) - 0.5, minor=True)  # white lines between layers
    ax.set_yticks(np.arange(len(first) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set(xlabel="decoder layer (left cell: attention, right cell: MLP; numbers = removal order)",
           title=f"{m.name}: pruning pattern at target {target_label(target)}")
    labels = {"attn": "attention kept", "mlp": "MLP kept", "pruned": "pruned"}
    ax.legend(handles=[Patch(color=COLOURS[k], label=v) for k, v in labels.items()], loc="upper left",
              bbox_to_anchor=(1.01, 1))
    return _save(fig, path)


def plot_speedup_estimate(m: ModelResults, path: Path) -> Path | None:
    """Estimated vs measured speedup of every pruned model (all seeds; vertical bars: the measured 95% CI), with the
    y = x line."""
    runs = m.runs.dropna(subset=["estimated_speedup", "measured_speedup"])
    runs = runs[np.isfinite(runs[["estimated_speedup", "measured_speedup"]].to_numpy(dtype=float)).all(axis=1)]
    if runs.empty:
        return None
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    for method, g in _by_method(runs):
        y = g["measured_speedup"].to_numpy(dtype=float)
        yerr = np.nan_to_num(np.abs(np.vstack([y - g["measured_speedup_lo"].to_numpy(dtype=float),
                                               g["measured_speedup_hi"].to_numpy(dtype=float) - y])))
        ax.errorbar(g["estimated_speedup"], y, yerr=yerr, fmt="none", capsize=3, alpha=0.6,
                    color=_style(method).get("color"))
        ax.scatter(g["estimated_speedup"], y, s=45, alpha=0.7, **_style(method))
    values = runs[["estimated_speedup", "measured_speedup_lo", "measured_speedup_hi", "measured_speedup"]].to_numpy()
    values = values[np.isfinite(values)]
    lo, hi = values.min() * 0.97, values.max() * 1.03
    ax.plot([lo, hi], [lo, hi], "--", color="grey", label="y = x")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", xlabel="estimated speedup (×)",
           ylabel="measured speedup (×)", title=f"{m.name}: estimated vs measured speedup")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


SWEEP_GLOB = "latency_sweep*.json"  # `sprint latency-sweep` files (paper Fig. 3a) in a results folder


def plot_latency_sweep(sweep: dict[str, Any], path: Path) -> Path | None:
    """Fig. 3a: measured latency (as a share of the dense latency, 95% CI) against the number of removed MHA and of
    removed MLP sublayers, one panel per kind, beside the linear predictions the sweep records: the profile's line
    from the same rounds and the latency table's (as shares of each one's dense time: the table was timed at another
    moment, the machine's speed cancels in the ratio)."""
    points = sweep.get("points") or []
    if not points:
        return None
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    dense = next((p for p in points if p["kind"] == "none"), None)
    lines = {"profile": ("--", "profile's linear model (same rounds)"),
             "table": (":", "latency table's linear model (used by pruning)")}
    for ax, kind in zip(axes, ("attn", "mlp")):
        rows = ([dense] if dense else []) + sorted((p for p in points if p["kind"] == kind), key=lambda p: p["removed"])
        x = np.array([p["removed"] for p in rows], dtype=float)
        y = np.array([p["ratio"]["value"] for p in rows], dtype=float)
        ci = np.array([p["ratio"]["ci95"] for p in rows], dtype=float).reshape(-1, 2)
        colour = COLOURS[kind]
        ax.errorbar(x, y, yerr=np.abs(np.vstack([y - ci[:, 0], ci[:, 1] - y])), fmt="o-", color=colour, capsize=3,
                    label="measured (95% CI)")
        for which, (style, label) in lines.items():
            pred = [(p["removed"], p["predicted"][which]["ratio"]) for p in rows if which in p.get("predicted", {})]
            if pred:
                px, py = np.array(pred, dtype=float).T
                ax.plot(px, py, style, color="black" if which == "profile" else "grey", label=label)
        name = "MHA (attention)" if kind == "attn" else "MLP"
        ax.set(xlabel=f"removed {name} sublayers (of {sweep.get('num_layers', '?')})", title=name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("latency / dense latency")
    fig.suptitle(f"{Path(str(sweep.get('model', '?'))).name}: latency vs removed sublayers (paper Fig. 3a), "
                 f"{sweep.get('prompt_len', '?')}+{sweep.get('gen_len', '?')} tokens on {sweep.get('device', '?')}; "
                 f"dense {sweep.get('dense_s', {}).get('value', math.nan):.2f} s", fontsize=10)
    return _save(fig, path)
