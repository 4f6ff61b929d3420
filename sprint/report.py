"""Report over a results folder: Markdown + CSV tables and PNG figures (paper Figs. 5-7, Table 1).

Every number is averaged over the seeds found (mean ± sample std); missing files are listed, never fatal.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from sprint.errors import SprintError
from sprint.io import atomic_write_bytes, atomic_write_text

NAMES = {"dense": "Dense", "sprint": "SPRINT", "sprint-l": "SPRINT-l", "sprint-t": "SPRINT-t", "sprint-e": "SPRINT-e",
         "shortgpt": "ShortGPT", "sleb": "SLEB", "blockpruner": "BlockPruner"}
ABLATION = ("sprint-l", "sprint-t", "sprint-e", "sprint")
KEYS = ["method", "target", "seed"]
PRUNE_COLS = [*KEYS, "est_pruning", "pruning_time_s", "num_tunings", "peak_rss_mb", "num_layers", "removed",
              "calibration", "hparams"]
METRIC_COLS = [*KEYS, "estimated_speedup", "measured_speedup", "mean_accuracy", "wikitext2_ppl", "eval_limit"]
TEXT_COLS = {"method", "removed", "calibration", "hparams", "eval_limit"}
COLOURS = {"attn": "#f28e2b", "mlp": "#4e79a7", "pruned": "#a0a0a0"}


@dataclass
class ModelResults:
    """Everything read for one model folder ``results/{name}/``."""

    name: str
    latency: dict[str, Any] | None
    dense: pd.DataFrame  # 0 or 1 row, metric columns
    runs: pd.DataFrame  # one row per (method, target, seed): pruning.json outer-joined with metrics
    tasks: dict[str, str]  # task -> metric name
    missing: list[str]


# ----------------------------------------------------------------------------------------------- loading


def _load_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; anything else raises SprintError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SprintError(f"{path}: cannot read JSON ({e})") from e
    if not isinstance(data, dict):
        raise SprintError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _num(value: Any) -> float:
    """JSON number -> float, null -> NaN; anything else raises TypeError."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _metrics_row(path: Path, tasks: dict[str, str]) -> dict[str, Any]:
    """One metrics JSON -> flat row (accuracies in %); records each task's metric name in ``tasks``."""
    d = _load_json(path)
    try:
        dense = d["method"] == "dense"
        row = {"method": str(d["method"]), "target": 1.0 if dense else round(_num(d["target_speedup"]), 3),
               "seed": int(d.get("prune_seed", d.get("seed")) or 0), "estimated_speedup": _num(d.get("estimated_speedup")),
               "measured_speedup": _num(d.get("measured_speedup")), "mean_accuracy": 100 * _num(d.get("mean_accuracy")),
               "wikitext2_ppl": _num(d.get("wikitext2_ppl")),
               "eval_limit": str((d.get("eval_params") or {}).get("limit") or "all")}
        for task, t in d["tasks"].items():
            row[f"task:{task}"] = 100 * _num(t["value"])
            tasks.setdefault(task, str(t.get("metric", "acc")))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SprintError(f"{path}: malformed metrics ({type(e).__name__}: {e})") from e
    return row


def _pruning_row(path: Path) -> dict[str, Any]:
    """One pruning.json -> flat row with the removal list as ``[(layer, kind), ...]`` in removal order."""
    d = _load_json(path)
    try:
        p, n = d["params"], int(d["num_layers"])
        removed = [(int(r["layer"]), str(r["kind"])) for r in d["removed"]]
        bad = [r for r in removed if r[1] not in ("attn", "mlp") or not 0 <= r[0] < n]
        if bad:
            raise ValueError(f"removed sublayers {bad} not in attn/mlp of layers 0..{n - 1}")
        return {"method": str(d["method"]), "target": round(_num(d["target_speedup"]), 3), "seed": int(p["seed"]),
                "est_pruning": _num(d.get("estimated_speedup")), "pruning_time_s": _num(d.get("wall_time_s")),
                "num_tunings": _num(d.get("num_tunings")), "peak_rss_mb": _num(d.get("peak_rss_mb")),
                "num_layers": n, "removed": removed,
                "calibration": f"{p.get('calibration_n')}×{p.get('calibration_seq_len')}",
                "hparams": ", ".join(f"{k}={p[k]}" for k in ("alpha", "beta", "tune_ratio") if k in p)}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SprintError(f"{path}: malformed pruning record ({type(e).__name__}: {e})") from e


def _name(method: str) -> str:
    return NAMES.get(method, method)


def _x(target: float) -> str:
    return f"{target:g}×"


def _order(methods: Iterable[str]) -> list[str]:
    """Methods in paper order (dense, SPRINT variants, baselines), unknown ones last by name."""
    rank = list(NAMES)
    return sorted(set(methods), key=lambda m: (rank.index(m) if m in rank else len(rank), m))


def _sort(df: pd.DataFrame, keys: tuple[str, ...] = ("method", "target", "seed")) -> pd.DataFrame:
    """Rows sorted by ``keys`` (those present), methods in paper order."""
    rank = {m: i for i, m in enumerate(_order(df["method"]))}
    return df.sort_values([k for k in keys if k in df],
                          key=lambda s: s.map(rank) if s.name == "method" else s).reset_index(drop=True)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns as float (NaN for null), seed as int."""
    df = df.astype({c: float for c in df.columns if c not in TEXT_COLS})
    return df.astype({"seed": int})


def load_model(folder: Path) -> ModelResults:
    """Read ``latency.json``, ``metrics/**`` and ``pruned/**`` of one model folder; note what is missing."""
    missing: list[str] = []
    latency = _load_json(folder / "latency.json") if (folder / "latency.json").is_file() else None
    if latency is None:
        missing.append("`latency.json` (no latency profile)")
    tasks: dict[str, str] = {}
    dense_path = folder / "metrics" / "dense.json"
    dense = [_metrics_row(dense_path, tasks)] if dense_path.is_file() else []
    if not dense:
        missing.append("`metrics/dense.json` (no dense baseline)")
    metrics = [_metrics_row(p, tasks) for p in sorted((folder / "metrics").glob("*/seed*/x*.json"))]
    pruning = [_pruning_row(p) for p in sorted((folder / "pruned").glob("*/seed*/x*/pruning.json"))]
    if not pruning:
        missing.append("`pruned/*/seed*/x*/pruning.json` (no pruned model)")
    cols = METRIC_COLS + [f"task:{t}" for t in tasks]
    runs = pd.merge(pd.DataFrame(pruning, columns=PRUNE_COLS), pd.DataFrame(metrics, columns=cols),
                    on=KEYS, how="outer", indicator=True)
    for side, what in (("left_only", "metrics"), ("right_only", "pruning.json")):
        for r in runs[runs["_merge"] == side].itertuples():
            missing.append(f"{what} of {_name(r.method)} {_x(r.target)} seed {r.seed}")
    runs["estimated_speedup"] = runs["estimated_speedup"].fillna(runs["est_pruning"])
    runs = _typed(runs.drop(columns=["_merge", "est_pruning"]))
    return ModelResults(folder.name, latency, _typed(pd.DataFrame(dense, columns=cols)), _sort(runs), tasks, missing)


def load_benchmarks(folder: Path, models: list[str]) -> pd.DataFrame:
    """Snakemake benchmark TSVs -> per (rule, model): jobs, summed wall/CPU seconds, max RSS (MB).

    The first path component below ``benchmarks/`` is the rule; the model is the first later one naming a model
    folder. Repeated measurements of one job (several rows) are averaged.
    """
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        try:
            df = pd.read_csv(path, sep="\t")
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise SprintError(f"{path}: cannot read benchmark TSV ({e})") from e
        if not {"s", "max_rss"} <= set(df.columns):
            raise SprintError(f"{path}: not a Snakemake benchmark file (needs columns s and max_rss)")
        num = df.reindex(columns=["s", "max_rss", "cpu_time"]).apply(pd.to_numeric, errors="coerce")
        parts = path.relative_to(folder).with_suffix("").parts
        rows.append({"rule": parts[0], "model": next((p for p in parts[1:] if p in models), "–"),
                     "wall_s": num["s"].mean(), "cpu_s": num["cpu_time"].mean(), "max_rss_mb": num["max_rss"].max()})
    if not rows:
        return pd.DataFrame()
    return (pd.DataFrame(rows).groupby(["rule", "model"])
            .agg(jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
                 max_rss_mb=("max_rss_mb", "max"))
            .reset_index())


# ------------------------------------------------------------------------------------------------ tables


def aggregate(runs: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Mean and sample std over seeds per (method, target): columns ``{col}_mean``, ``{col}_std`` and ``seeds``."""
    g = runs.groupby(["method", "target"], sort=False)
    out = g[cols].agg(["mean", "std"])
    out.columns = [f"{c}_{s}" for c, s in out.columns]
    out.insert(0, "seeds", g["seed"].nunique())
    return _sort(out.reset_index())


def _pm(mean: float, std: float, fmt: str) -> str:
    """``mean ± std`` (just the mean for a single seed, ``–`` when absent)."""
    if math.isnan(mean):
        return "–"
    return fmt.format(mean) if math.isnan(std) else f"{fmt.format(mean)} ± {fmt.format(std)}"


def _display(agg: pd.DataFrame, spec: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Aggregated frame -> human table: method name, target, seeds, then ``label: mean ± std`` per spec entry."""
    out = pd.DataFrame({"method": agg["method"].map(_name), "target": agg["target"].map(_x), "seeds": agg["seeds"]})
    for label, col, fmt in spec:
        out[label] = [_pm(m, s, fmt) for m, s in zip(agg[f"{col}_mean"], agg[f"{col}_std"])]
    return out


def _md(df: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency)."""
    rows = [list(map(str, df.columns)), ["---"] * df.shape[1], *df.astype(str).values.tolist()]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


# ----------------------------------------------------------------------------------------------- figures


def _style(method: str) -> dict[str, str]:
    """Fixed colour, marker and label per method, the same in every figure."""
    i = list(NAMES).index(method) if method in NAMES else len(NAMES)
    return {"color": f"C{i % 10}", "marker": "os^DvPXph"[i % 9], "label": _name(method)}


def _by_method(df: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    for m in _order(df["method"]):
        yield m, df[df["method"] == m]


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def plot_accuracy_speedup(m: ModelResults, path: Path) -> Path | None:
    """Fig. 5: mean accuracy vs measured speedup, one line per method (error bars over seeds), dense star."""
    runs = m.runs.dropna(subset=["measured_speedup", "mean_accuracy"])
    if runs.empty and m.dense.empty:
        return None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for method, g in _by_method(runs):
        s = g.groupby("target").agg(x=("measured_speedup", "mean"), xe=("measured_speedup", "std"),
                                    y=("mean_accuracy", "mean"), ye=("mean_accuracy", "std")).sort_values("x")
        ax.errorbar(s.x, s.y, xerr=s.xe.fillna(0), yerr=s.ye.fillna(0), capsize=3, ms=7, **_style(method))
    if not m.dense.empty:
        ax.plot([1.0], m.dense["mean_accuracy"].iloc[:1], "*", ms=16, color="black", label="Dense")
    ax.set(xlabel="measured speedup (×)", ylabel="mean zero-shot accuracy (%)",
           title=f"{m.name}: accuracy vs speedup (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_time_accuracy(m: ModelResults, path: Path) -> Path | None:
    """Fig. 6: pruning time (log x) vs mean accuracy, one panel per target speedup, one point per method."""
    runs = m.runs.dropna(subset=["pruning_time_s", "mean_accuracy"])
    targets = sorted(runs["target"].unique())
    if not targets:
        return None
    ncols = min(len(targets), 3)
    nrows = math.ceil(len(targets) / ncols)
    fig = Figure(figsize=(4.5 * ncols + 1.6, 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    for ax, target in zip(axes, targets):
        for method, g in _by_method(runs[runs["target"] == target]):
            time, acc = g["pruning_time_s"], g["mean_accuracy"]
            ax.errorbar(time.mean(), acc.mean(), xerr=np.nan_to_num(time.std()), yerr=np.nan_to_num(acc.std()),
                        ms=8, capsize=3, **_style(method))
        if not m.dense.empty:
            ax.axhline(m.dense["mean_accuracy"].iloc[0], ls="--", color="black", lw=1, label="Dense")
        ax.set(xscale="log", xlabel="pruning time (s, log scale)", title=f"target {_x(target)}")
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
    fig.suptitle(f"{m.name}: pruning time vs accuracy (mean ± std over seeds)")
    return _save(fig, path)


def plot_pattern(m: ModelResults, target: float, path: Path) -> Path | None:
    """Fig. 7: kept/pruned sublayers, one row per method (its first seed), 2 cells per layer (attention, MLP).

    Pruned cells carry their removal order.
    """
    sel = m.runs[(m.runs["target"] == target) & m.runs["num_layers"].notna()]
    if sel.empty:
        return None
    first = _sort(sel.sort_values("seed").groupby("method").head(1))
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
    ax.set_yticks(range(len(first)), labels=[f"{_name(r.method)} (seed {r.seed})" for r in first.itertuples()])
    ax.set_xticks(np.arange(0, 2 * n_layers + 1, 2) - 0.5, minor=True)  # white lines between layers
    ax.set_yticks(np.arange(len(first) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set(xlabel="decoder layer (left cell: attention, right cell: MLP; numbers = removal order)",
           title=f"{m.name}: pruning pattern at target {_x(target)}")
    labels = {"attn": "attention kept", "mlp": "MLP kept", "pruned": "pruned"}
    ax.legend(handles=[Patch(color=COLOURS[k], label=v) for k, v in labels.items()], loc="upper left",
              bbox_to_anchor=(1.01, 1))
    return _save(fig, path)


def plot_speedup_estimate(m: ModelResults, path: Path) -> Path | None:
    """Estimated vs measured speedup of every pruned model (all seeds), with the y = x line."""
    runs = m.runs.dropna(subset=["estimated_speedup", "measured_speedup"])
    runs = runs[np.isfinite(runs[["estimated_speedup", "measured_speedup"]].to_numpy(dtype=float)).all(axis=1)]
    if runs.empty:
        return None
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    for method, g in _by_method(runs):
        ax.scatter(g["estimated_speedup"], g["measured_speedup"], s=45, alpha=0.7, **_style(method))
    values = runs[["estimated_speedup", "measured_speedup"]].to_numpy()
    lo, hi = values.min() * 0.97, values.max() * 1.03
    ax.plot([lo, hi], [lo, hi], "--", color="grey", label="y = x")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", xlabel="estimated speedup (×)",
           ylabel="measured speedup (×)", title=f"{m.name}: estimated vs measured speedup")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------ report


def _unique(values: Iterable[Any]) -> str:
    found = sorted({str(v) for v in values if isinstance(v, str) or not pd.isna(v)})
    return ", ".join(found) if found else "unknown"


def _header(m: ModelResults) -> list[str]:
    """Model title, run sizes read from the results, what is missing, and the averaging note."""
    lat = m.latency or {}
    latency = "missing" if m.latency is None else (
        f"{lat.get('prompt_len', '?')} prompt + {lat.get('gen_len', '?')} generated tokens on "
        f"{lat.get('device', 'unknown device')}" + (f"; dense {lat['dense_s']:.3f} s" if "dense_s" in lat else ""))
    pruned = m.runs.dropna(subset=["num_layers"])
    evaluated = pd.concat([m.dense, m.runs.dropna(subset=["mean_accuracy"])])
    sprint = pruned[pruned["method"].isin(ABLATION)]
    return [
        f"## {m.name}", "",
        f"- Calibration (pruning): {_unique(pruned['calibration'])} (sequences × tokens)",
        f"- Evaluation: limit per task = {_unique(evaluated['eval_limit'])}; tasks: "
        + (", ".join(f"{t} ({k})" for t, k in m.tasks.items()) or "none"),
        f"- Latency: {latency}",
        f"- SPRINT hyper-parameters: {_unique(sprint['hparams'])}",
        f"- Methods: {', '.join(map(_name, _order(m.runs['method']))) or 'none'}; "
        f"targets: {', '.join(map(_x, sorted(m.runs['target'].unique()))) or 'none'}; "
        f"seeds: {_unique(m.runs['seed'])}",
        "- Missing: " + ("; ".join(m.missing) if m.missing else "nothing"), "",
        "> Numbers are averaged over seeds: **mean ± sample std** (the `seeds` column says over how many; "
        "no ± with a single seed). Accuracies in %, times in seconds.", "",
    ]


def _section(title: str, shown: pd.DataFrame, data: pd.DataFrame, csv: Path, out: list[Path], note: str = "",
             empty: str = "_no data_") -> list[str]:
    """Titled Markdown table ``shown``; its numeric form ``data`` goes to ``csv`` (appended to ``out``)."""
    if shown.empty:
        return [f"### {title}", "", empty, ""]
    out.append(atomic_write_text(csv, data.round(6).to_csv(index=False)))
    return [f"### {title}", "", *([note, ""] if note else []), _md(shown), "",
            f"CSV: [{csv.name}](report/{csv.name})", ""]


def _speedup_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per pruned model (method, target, seed): estimated and measured speedup and |est − meas| / meas in %."""
    speed = runs.dropna(subset=["estimated_speedup", "measured_speedup"])[[*KEYS, "estimated_speedup",
                                                                           "measured_speedup"]]
    return speed.assign(rel_error_pct=100 * (speed["estimated_speedup"] / speed["measured_speedup"] - 1).abs())


def _model_report(m: ModelResults, folder: Path, out: list[Path]) -> list[str]:
    """Tables and figures of one model (files appended to ``out``) -> its Markdown lines."""
    def path(suffix: str) -> Path:
        return folder / f"{m.name}_{suffix}"

    acc, time = ("mean acc. (%)", "mean_accuracy", "{:.2f}"), ("pruning time (s)", "pruning_time_s", "{:.1f}")
    spec = [("measured speedup (×)", "measured_speedup", "{:.3f}"),
            ("estimated speedup (×)", "estimated_speedup", "{:.3f}"),
            *((f"{t} (%)", f"task:{t}", "{:.2f}") for t in m.tasks), acc, ("WikiText-2 ppl", "wikitext2_ppl", "{:.2f}"),
            time]
    main = aggregate(pd.concat([m.dense, m.runs]), [c for _, c, _ in spec])
    abl_spec = [acc, time, ("tunings", "num_tunings", "{:.1f}"), ("peak RSS (MB)", "peak_rss_mb", "{:.0f}")]
    ablation = _sort(aggregate(m.runs[m.runs["method"].isin(ABLATION)], [c for _, c, _ in abl_spec]),
                     ("target", "method"))
    speed = _speedup_table(m.runs)
    shown = pd.DataFrame({"method": speed["method"].map(_name), "target": speed["target"].map(_x),
                          "seed": speed["seed"], "estimated (×)": speed["estimated_speedup"].map("{:.3f}".format),
                          "measured (×)": speed["measured_speedup"].map("{:.3f}".format),
                          "rel. error (%)": speed["rel_error_pct"].map("{:.2f}".format)})
    lines = _header(m)
    lines += _section("Main results", _display(main, spec), main, path("main.csv"), out)
    lines += _section("Ablation (paper Table 1)", _display(ablation, abl_spec), ablation, path("ablation.csv"), out,
                      "SPRINT-l: no latency-aware importance; SPRINT-t: no tunability-aware sensitivity; "
                      "SPRINT-e: no activation checkpointing / fast candidate selection.")
    lines += _section("Estimated vs measured speedup", shown, speed, path("speedup.csv"), out,
                      "Relative error |est − meas| / meas per pruned model; "
                      f"mean {speed['rel_error_pct'].mean():.2f}%.")
    figures = [("Accuracy vs measured speedup (paper Fig. 5)", plot_accuracy_speedup(m, path("accuracy_speedup.png"))),
               ("Pruning time vs accuracy (paper Fig. 6)", plot_time_accuracy(m, path("time_accuracy.png"))),
               *((f"Pruning pattern at {_x(t)} (paper Fig. 7)", plot_pattern(m, t, path(f"pattern_x{t:g}.png")))
                 for t in sorted(m.runs["target"].unique())),
               ("Estimated vs measured speedup", plot_speedup_estimate(m, path("speedup_estimate.png")))]
    lines += ["### Figures", ""]
    for caption, png in figures:
        if png is not None:
            out.append(png)
            lines += [f"![{caption}](report/{png.name})", ""]
    return lines


def write_report(results: Path, output: Path) -> list[Path]:
    """Write ``output`` (Markdown) plus its CSVs and PNGs in ``output.parent / "report"``; return every file written."""
    results, output = Path(results), Path(output)
    if not results.is_dir():
        raise SprintError(f"{results}: results folder not found")
    folder = output.parent / "report"
    models = [d for d in sorted(results.iterdir())
              if d.is_dir() and any((d / n).exists() for n in ("latency.json", "metrics", "pruned"))]
    written: list[Path] = []
    lines = ["# SPRINT report", "", f"Results folder: `{results}`.", ""]
    if not models:
        lines += [f"No model results found (expected `{results}/<model>/` with latency.json, metrics/ or pruned/).", ""]
    for d in models:
        lines += _model_report(load_model(d), folder, written)
    bench = load_benchmarks(results / "benchmarks", [d.name for d in models])
    lines += _section("Pipeline stages (Snakemake benchmarks)", bench.round(1), bench, folder / "benchmarks.csv",
                      written, "Per rule (and model): number of jobs, summed wall and CPU seconds, max RSS (MB)."
                      + (f" Total wall time: {bench['wall_s'].sum():.1f} s." if not bench.empty else ""),
                      f"_missing: no benchmark TSVs under `{results / 'benchmarks'}`_")
    written.append(atomic_write_text(output, "\n".join(lines).rstrip() + "\n"))
    return written
