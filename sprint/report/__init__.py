"""Report over a results folder: Markdown + CSV tables and PNG figures (paper Figs. 5-7, Table 1).

Every number is averaged over the seeds found (mean ± sample std); with a single seed it carries its own
uncertainty instead (accuracy ± evaluation stderr, perplexity and measured speedup with their 95 % CI).  Methods at
one target are compared with the best by a paired bootstrap over the documents (windows) they all answered
(:mod:`sprint.measure.stats`).  Missing files are listed, never fatal.
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

from sprint.measure import stats
from sprint.methods import ONE_SHOT, REGISTRY, point_label, point_name
from sprint.errors import SprintError
from sprint.io import atomic_write_bytes, atomic_write_text

NAMES = {"dense": "Dense", **{m.name: m.label for m in REGISTRY.values()}}  # also the paper order of methods
ABLATION = ("sprint-l", "sprint-t", "sprint-e", "sprint")
KEYS = ["method", "point", "seed"]  # point: x1.2 (a target speedup) or a weight setting, 2of4 / u50
PRUNE_COLS = [*KEYS, "est_pruning", "pruning_time_s", "num_tunings", "peak_rss_mb", "num_layers", "removed",
              "calibration", "calibration_n", "calibration_seq_len", "hparams", "ppl_windows"]
# ``{col}_se``: standard error of ``col``; ``{col}_lo`` / ``{col}_hi``: its 95 % CI (single evaluation)
METRIC_COLS = [*KEYS, "estimated_speedup", "measured_speedup", "measured_speedup_lo", "measured_speedup_hi",
               "speedup_spread", "mean_accuracy", "mean_accuracy_se", "wikitext2_ppl", "wikitext2_ppl_lo",
               "wikitext2_ppl_hi", "ppl_tokens", "ppl_seq_len", "eval_limit", "kernels"]
TEXT_COLS = {"method", "point", "removed", "calibration", "hparams", "eval_limit", "kernels"}
N_BOOT = 2000  # paired-bootstrap resamples
COLOURS = {"attn": "#f28e2b", "mlp": "#4e79a7", "pruned": "#a0a0a0"}


@dataclass
class ModelResults:
    """Everything read for one model folder ``results/{name}/``."""

    name: str
    latency: dict[str, Any] | None
    dense: pd.DataFrame  # 0 or 1 row, metric columns
    runs: pd.DataFrame  # one row per (method, point, seed): pruning.json outer-joined with metrics, + target
    tasks: dict[str, str]  # task -> metric name
    missing: list[str]
    samples: dict[tuple[str, str, int], dict[str, stats.Sample]]  # (method, point, seed) -> "acc" / "ppl" -> items


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


def _pair(value: Any) -> tuple[float, float]:
    """A JSON ``[lo, hi]`` -> two floats; absent -> two NaNs."""
    lo, hi = value if value is not None else (None, None)
    return _num(lo), _num(hi)


def _task_cols(task: str) -> list[str]:
    return [f"task:{task}", f"task:{task}_se", f"n:{task}", f"total:{task}"]


SPEEDUP_FIELDS = ("measured_speedup", "measured_speedup_ci", "latency_s", "dense_latency_s", "speedup")


def _point(d: dict[str, Any]) -> str:
    """The point of a metrics, speedup or pruning record (records written before points had targets only)."""
    if d.get("point"):
        return str(d["point"])
    return point_name(1.0 if d["method"] == "dense" else round(_num(d["target_speedup"]), 3))


def _target(point: str) -> float:
    """The target speedup of a point (NaN for a weight setting)."""
    return float(point[1:]) if point.startswith("x") else math.nan


def _run_key(d: dict[str, Any]) -> tuple[str, str, int]:
    """(method, point, seed) of a metrics or speedup record."""
    return str(d["method"]), _point(d), int(d.get("prune_seed", d.get("seed")) or 0)


def load_speedups(path: Path) -> dict[tuple[str, float, int], dict[str, Any]]:
    """``speedup.json`` of ``sprint speedup`` -> (method, point, seed) -> its measured-speedup fields."""
    try:
        return {_run_key(e): {k: e[k] for k in SPEEDUP_FIELDS if k in e}
                for e in _load_json(path)["models"].values()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SprintError(f"{path}: malformed speedup file ({type(e).__name__}: {e})") from e


def _metrics_row(path: Path, tasks: dict[str, str], speedups: dict | None = None,
                 ) -> tuple[dict[str, Any], dict[str, stats.Sample]]:
    """One metrics JSON -> flat row (accuracies in %) and its per-item data for paired tests.  A metrics file
    without a measured speedup takes its run's from ``speedups`` (:func:`load_speedups`), if there.

    The per-item data (absent from older files) is ``{"acc": {task: (doc_ids, correct)}}`` and
    ``{"ppl": {"wikitext2 (L-token windows)": (window indices, window NLLs)}}``.  Records each task's metric name
    in ``tasks``.
    """
    d = _load_json(path)
    params = d.get("eval_params") or {}
    try:
        if d.get("measured_speedup") is None and speedups:
            d = {**d, **speedups.get(_run_key(d), {})}
        speedup_lo, speedup_hi = _pair(d.get("measured_speedup_ci"))
        ppl_lo, ppl_hi = _pair(d.get("wikitext2_ppl_ci"))
        row = {**dict(zip(KEYS, _run_key(d))), "estimated_speedup": _num(d.get("estimated_speedup")),
               "measured_speedup": _num(d.get("measured_speedup")), "measured_speedup_lo": speedup_lo,
               "measured_speedup_hi": speedup_hi, "speedup_spread": 100 * _num((d.get("speedup") or {}).get("spread")),
               "mean_accuracy": 100 * _num(d.get("mean_accuracy")),
               "mean_accuracy_se": 100 * _num(d.get("mean_accuracy_stderr")),
               "wikitext2_ppl": _num(d.get("wikitext2_ppl")), "wikitext2_ppl_lo": ppl_lo, "wikitext2_ppl_hi": ppl_hi,
               "ppl_tokens": _num(d.get("wikitext2_tokens")), "ppl_seq_len": _num(params.get("ppl_seq_len")),
               "eval_limit": str(params.get("limit") or "all"),
               "kernels": str(((d.get("speedup") or {}).get("kernels") or {}).get("kernels", "dense"))}
        sample: dict[str, stats.Sample] = {}
        for task, t in d["tasks"].items():
            row.update(zip(_task_cols(task), (100 * _num(t["value"]), 100 * _num(t.get("stderr")),
                                              _num(t.get("n")), _num(t.get("total")))))
            tasks.setdefault(task, str(t.get("metric", "acc")))
        if all("correct" in t for t in d["tasks"].values()):
            sample["acc"] = {task: (t["doc_ids"], t["correct"]) for task, t in d["tasks"].items()}
        if "wikitext2_window_nll" in d:
            nll = d["wikitext2_window_nll"]
            sample["ppl"] = {f"wikitext2 ({params.get('ppl_seq_len')}-token windows)": (range(len(nll)), nll)}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SprintError(f"{path}: malformed metrics ({type(e).__name__}: {e})") from e
    return row, sample


def _pruning_row(path: Path) -> dict[str, Any]:
    """One pruning.json -> flat row with the removal list as ``[(layer, kind), ...]`` in removal order."""
    d = _load_json(path)
    try:
        p, n = d["params"], int(d["num_layers"])
        removed = [(int(r["layer"]), str(r["kind"])) for r in d["removed"]]
        bad = [r for r in removed if r[1] not in ("attn", "mlp") or not 0 <= r[0] < n]
        if bad:
            raise ValueError(f"removed sublayers {bad} not in attn/mlp of layers 0..{n - 1}")
        return {"method": str(d["method"]), "point": _point(d), "seed": int(p["seed"]),
                "est_pruning": _num(d.get("estimated_speedup")), "pruning_time_s": _num(d.get("wall_time_s")),
                "num_tunings": _num(d.get("num_tunings")), "peak_rss_mb": _num(d.get("peak_rss_mb")),
                "num_layers": n, "removed": removed,
                "calibration": f"{p.get('calibration_n')}×{p.get('calibration_seq_len')}",
                "calibration_n": _num(p.get("calibration_n")),
                "calibration_seq_len": _num(p.get("calibration_seq_len")),
                "hparams": ", ".join(f"{k}={p[k]}" for k in ("alpha", "beta", "tune_ratio") if k in p),
                "ppl_windows": _num(p.get("ppl_windows"))}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SprintError(f"{path}: malformed pruning record ({type(e).__name__}: {e})") from e


def method_name(method: str) -> str:
    """The display name of a method (SPRINT, ShortGPT, ..., as in the paper)."""
    return NAMES.get(method, method)


def _x(target: float) -> str:
    return f"{target:g}×"


def _points(points: Iterable[str]) -> list[str]:
    """Points in order: target speedups ascending, then weight settings (N:M, then unstructured by sparsity)."""
    return sorted(set(points), key=lambda p: (0, _target(p), p) if p.startswith("x") else (1, p.startswith("u"),
                                                                                          len(p), p))


def _point_header(points: Iterable[str]) -> str:
    """The column that names points: "target", or "target / setting" once weight settings are among them."""
    return "target" if all(p.startswith("x") for p in points) else "target / setting"


def _order(methods: Iterable[str]) -> list[str]:
    """Methods in paper order (dense, SPRINT variants, baselines), unknown ones last by name."""
    rank = list(NAMES)
    return sorted(set(methods), key=lambda m: (rank.index(m) if m in rank else len(rank), m))


def _sort(df: pd.DataFrame, keys: tuple[str, ...] = ("method", "point", "seed")) -> pd.DataFrame:
    """Rows sorted by ``keys`` (those present), methods in paper order, points by :func:`_points`."""
    rank = {"method": {m: i for i, m in enumerate(_order(df["method"]))},
            "point": {p: i for i, p in enumerate(_points(df["point"]))} if "point" in df else {}}
    return df.sort_values([k for k in keys if k in df],
                          key=lambda s: s.map(rank[s.name]) if s.name in rank else s).reset_index(drop=True)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns as float (NaN for null), seed as int."""
    df = df.astype({c: float for c in df.columns if c not in TEXT_COLS})
    return df.astype({"seed": int})


def load_model(folder: Path, metrics_files: list[Path] | None = None) -> ModelResults:
    """Read ``latency.json``, ``metrics/**`` and ``pruned/**`` of one model folder; note what is missing.

    With ``metrics_files`` (what the pipeline's DAG made for this model), only those metrics files and the pruning
    records of their runs are read: leftovers of an earlier configuration in the folder stay out of the report."""
    missing: list[str] = []
    latency = _load_json(folder / "latency.json") if (folder / "latency.json").is_file() else None
    if latency is None:
        missing.append("`latency.json` (no latency profile)")
    tasks: dict[str, str] = {}
    speedups = load_speedups(folder / "speedup.json") if (folder / "speedup.json").is_file() else {}
    if metrics_files is None:
        dense_paths = [folder / "metrics" / "dense.json"]
        metric_paths = sorted((folder / "metrics").glob("*/seed*/*.json"))
    else:
        dense_paths = [p for p in metrics_files if p.name == "dense.json"]
        metric_paths = sorted(p for p in metrics_files if p.name != "dense.json")
    dense = [_metrics_row(p, tasks, speedups) for p in dense_paths if p.is_file()]
    if not dense:
        missing.append("`metrics/dense.json` (no dense baseline)")
    metrics = [_metrics_row(p, tasks, speedups) for p in metric_paths]
    samples = {(r["method"], r["point"], r["seed"]): sample for r, sample in dense + metrics}
    dense, metrics = [r for r, _ in dense], [r for r, _ in metrics]
    pruning = [_pruning_row(p) for p in sorted((folder / "pruned").glob("*/seed*/*/pruning.json"))]
    if metrics_files is not None:
        runs_made = {(r["method"], r["point"], r["seed"]) for r in metrics}
        pruning = [r for r in pruning if (r["method"], r["point"], r["seed"]) in runs_made]
    if not pruning:
        missing.append("`pruned/*/seed*/*/pruning.json` (no pruned model)")
    cols = METRIC_COLS + [c for t in tasks for c in _task_cols(t)]
    runs = pd.merge(pd.DataFrame(pruning, columns=PRUNE_COLS), pd.DataFrame(metrics, columns=cols),
                    on=KEYS, how="outer", indicator=True)
    for side, what in (("left_only", "metrics"), ("right_only", "pruning.json")):
        for r in runs[runs["_merge"] == side].itertuples():
            missing.append(f"{what} of {method_name(r.method)} {point_label(r.point)} seed {r.seed}")
    runs["estimated_speedup"] = runs["estimated_speedup"].fillna(runs["est_pruning"])
    dense = pd.DataFrame(dense, columns=cols)
    for df in (runs, dense):
        df.insert(2, "target", df["point"].map(_target).astype(float))
    runs = _typed(runs.drop(columns=["_merge", "est_pruning"]))
    return ModelResults(folder.name, latency, _typed(dense), _sort(runs), tasks, missing, samples)


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
    """Mean and sample std over seeds per (method, point): columns ``{col}_mean``, ``{col}_std`` and ``seeds``.

    A column's uncertainty columns (``{col}_se``, ``{col}_lo``, ``{col}_hi``) present in ``runs`` come along.
    """
    cols = [c for col in cols for c in (col, f"{col}_se", f"{col}_lo", f"{col}_hi") if c == col or c in runs]
    g = runs.groupby(["method", "point"], sort=False)
    out = g[cols].agg(["mean", "std"])
    out.columns = [f"{c}_{s}" for c, s in out.columns]
    out.insert(0, "seeds", g["seed"].nunique())
    return _sort(out.reset_index())


def _bar(row: dict[str, Any], col: str) -> tuple[float, float, float, bool]:
    """``col`` of an aggregated row: value, lower and upper error (NaN where unknown), and whether they are a CI.

    Several seeds: mean ± sample std.  One seed: its 95 % CI (``{col}_lo`` / ``_hi``), else ± its stderr.
    """
    value = row[f"{col}_mean"]
    if row["seeds"] > 1:
        return value, row[f"{col}_std"], row[f"{col}_std"], False
    lo, hi, se = (row.get(f"{col}_{s}_mean", math.nan) for s in ("lo", "hi", "se"))
    if not (math.isnan(lo) or math.isnan(hi)):
        return value, value - lo, hi - value, True
    return value, se, se, False


def _cell(row: dict[str, Any], col: str, fmt: str) -> str:
    """``mean ± std`` over seeds; one seed: ``value [lo, hi]`` or ``value ± stderr``; ``–`` when absent."""
    value, lower, upper, ci = _bar(row, col)
    f = fmt.format
    if math.isnan(value):
        return "–"
    if ci:
        return f"{f(value)} [{f(value - lower)}, {f(value + upper)}]"
    return f(value) if math.isnan(lower) else f"{f(value)} ± {f(lower)}"


def _display(agg: pd.DataFrame, spec: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Aggregated frame -> human table: method name, point, seeds, then one :func:`_cell` per spec entry."""
    out = pd.DataFrame({"method": agg["method"].map(method_name), _point_header(agg["point"]): agg["point"].map(point_label),
                        "seeds": agg["seeds"]})
    rows = agg.to_dict("records")
    for label, col, fmt in spec:
        out[label] = [_cell(row, col, fmt) for row in rows]
    return out


def markdown_table(df: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency)."""
    rows = [list(map(str, df.columns)), ["---"] * df.shape[1], *df.astype(str).values.tolist()]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


# ------------------------------------------------------------------------------------- paired comparisons

MEASURES = {"acc": (stats.mean_accuracy, True, 100.0), "ppl": (stats.perplexity, False, 1.0)}  # stat, higher, scale
MARKS = {"best": "best", "≈": "≈ best", "worse": "worse"}
VS_BEST = ("_vs best_: the paired test of *Paired comparisons with the best method* below (≈ best: "
           "indistinguishable from the best at the same target or weight setting), one mark per seed in seed order.")


def paired_tests(m: ModelResults) -> tuple[pd.DataFrame, list[str]]:
    """Per (point, seed), every pruned method against the best one by mean accuracy and by perplexity.

    Columns ``point, seed, method`` and per measure (``acc`` in %, ``ppl``): the value, ``{measure}_diff`` with
    ``_lo`` / ``_hi`` (this method − the best, paired-bootstrap 95 % CI; accuracy in percentage points) and
    ``{measure}_mark`` ("best", "≈", "worse").  Methods without per-item data (older metrics files) are left out;
    a group whose methods answered different items is skipped and named in the returned notes.
    """
    cols = ["point", "seed", "method", *(f"{k}{s}" for k in MEASURES for s in ("", "_diff", "_lo", "_hi", "_mark"))]
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    notes = []
    points = _points(point for method, point, _ in m.samples if method != "dense")
    groups = sorted({(point, seed) for method, point, seed in m.samples if method != "dense"},
                    key=lambda g: (points.index(g[0]), g[1]))
    for point, seed in groups:
        for measure, (stat, higher, scale) in MEASURES.items():
            group = {method: m.samples[method, point, seed][measure] for method in _order(
                k[0] for k, v in m.samples.items() if k[0] != "dense" and k[1:] == (point, seed) and measure in v)}
            if len(group) < 2:
                continue
            try:
                verdicts = stats.compare_to_best(group, stat, higher, N_BOOT)
            except SprintError as e:
                notes.append(f"{measure} at {point_label(point)} seed {seed} not compared: {e}")
                continue
            for method, v in verdicts.items():
                d = v.diff
                rows.setdefault((method, point, seed), {"method": method, "point": point, "seed": seed}).update(
                    {measure: scale * v.value, f"{measure}_diff": scale * d.estimate, f"{measure}_lo": scale * d.lo,
                     f"{measure}_hi": scale * d.hi, f"{measure}_mark": v.mark})
    return _sort(pd.DataFrame(list(rows.values()), columns=cols), ("point", "seed", "method")), notes


def _marks(tests: pd.DataFrame, agg: pd.DataFrame, measure: str) -> list[str]:
    """Per aggregated (method, point) row: its marks against the best, one per seed in seed order ("" if none)."""
    marks = tests.dropna(subset=[f"{measure}_mark"]).sort_values("seed").groupby(["method", "point"])[
        f"{measure}_mark"].agg(lambda s: " / ".join(MARKS[v] for v in s))
    return [marks.get((r.method, r.point), "") for r in agg.itertuples()]


def summary_table(m: ModelResults, tests: pd.DataFrame) -> pd.DataFrame:
    """The headline columns per (method, point), dense first: measured speedup, mean accuracy, perplexity (cells as
    in the main table) and both paired marks against the best (``tests``: :func:`paired_tests`)."""
    spec = [("measured speedup (×)", "measured_speedup", "{:.3f}"), ("mean acc. (%)", "mean_accuracy", "{:.2f}"),
            ("WikiText-2 ppl", "wikitext2_ppl", "{:.2f}")]
    agg = aggregate(pd.concat([m.dense, m.runs]), [c for _, c, _ in spec])
    shown = _display(agg, spec)
    shown["acc. vs best"] = _marks(tests, agg, "acc")
    shown["ppl vs best"] = _marks(tests, agg, "ppl")
    return shown


def _docs(m: ModelResults, total: bool = False) -> str:
    """Documents evaluated per task (``arc_easy 50, piqa 50``; with ``total``: ``arc_easy 50 of 2376, ...``)."""
    runs = pd.concat([m.dense, m.runs])
    return ", ".join(f"{t} {_unique(runs[f'n:{t}'].dropna().astype(int))}"
                     + (f" of {_unique(runs[f'total:{t}'].dropna().astype(int))}" if total else "") for t in m.tasks)


def _paired_section(m: ModelResults, csv: Path, out: list[Path]) -> tuple[list[str], pd.DataFrame]:
    """The section of :func:`paired_tests` (its legend says what the test is and on how many items it ran)."""
    tests, skipped = paired_tests(m)
    runs = pd.concat([m.dense, m.runs])
    windows = _unique((runs["ppl_tokens"] / (runs["ppl_seq_len"] - 1)).dropna().astype(int))
    legend = (f"Paired test: each method against the best one at the same target (or weight setting) and seed (by "
              f"mean accuracy; by "
              f"perplexity), on the documents every method answered ({_docs(m)} per task; resampled within each "
              f"task) and the same {windows} WikiText-2 windows of {_unique(runs['ppl_seq_len'].dropna().astype(int))}"
              f" tokens; paired bootstrap, {N_BOOT} resamples, 95% CI of the difference. **≈ best**: the CI includes "
              "0, indistinguishable from the best; **worse**: the CI excludes 0.")
    shown = pd.DataFrame({
        _point_header(tests["point"]): tests["point"].map(point_label), "seed": tests["seed"],
        "method": tests["method"].map(method_name),
        "mean acc. (%)": [_ci(v, math.nan, math.nan, "{:.2f}") for v in tests["acc"]],
        "Δ acc. (pp) [95% CI]": [_ci(*r, fmt="{:+.2f}") for r in tests[["acc_diff", "acc_lo", "acc_hi"]].to_numpy()],
        "acc. vs best": tests["acc_mark"].map(MARKS).fillna(""),
        "ppl": [_ci(v, math.nan, math.nan, "{:.2f}") for v in tests["ppl"]],
        "Δ ppl [95% CI]": [_ci(*r, fmt="{:+.2f}") for r in tests[["ppl_diff", "ppl_lo", "ppl_hi"]].to_numpy()],
        "ppl vs best": tests["ppl_mark"].map(MARKS).fillna("")})
    skipped_note = "".join(f"; skipped: {n}" for n in skipped)
    lines = _section("Paired comparisons with the best method", shown, tests, csv, out, legend + skipped_note,
                     "_no comparison: fewer than two methods with per-document results at any target_" + skipped_note)
    return lines, tests


# ----------------------------------------------------------------------------------------------- figures


def _at_setting(method: str) -> bool:
    """A method pruned once at a setting (the one-shot kinds of sprint.methods) rather than to a target."""
    return method in REGISTRY and REGISTRY[method].kind in ONE_SHOT


# One colour per method: matplotlib's ten, then three more (with eleven methods, "C{i % 10}" gave LLM-Pruner
# SPRINT's orange).
PALETTE = [*(f"C{i}" for i in range(10)), "#393b79", "#7f0000", "#e7298a"]


def _style(method: str) -> dict[str, str]:
    """Fixed colour, marker and label per method, the same in every figure."""
    i = list(NAMES).index(method) if method in NAMES else len(NAMES)
    return {"color": PALETTE[i % len(PALETTE)], "marker": "os^DvPXph"[i % 9], "label": method_name(method)}


def _by_method(df: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    for m in _order(df["method"]):
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
    """Values of ``col`` and their (2, n) lower / upper errors (:func:`_bar`; 0 where unknown) for errorbar()."""
    bars = np.array([_bar(r, col)[:3] for r in rows], dtype=float).reshape(-1, 3)
    return bars[:, 0], np.nan_to_num(bars[:, 1:].T)


def plot_metric_speedup(m: ModelResults, path: Path, col: str = "mean_accuracy") -> Path | None:
    """Fig. 5: mean accuracy (or WikiText-2 perplexity, ``col="wikitext2_ppl"``) vs measured speedup, one line per
    method, dense star at its measured speedup (≈ 1).

    Error bars: accuracy stderr or perplexity 95 % CI (vertical) and speedup 95 % CI (horizontal) for one seed, std
    over seeds otherwise.
    """
    ppl = col == "wikitext2_ppl"
    dense = m.dense.fillna({"measured_speedup": 1.0})  # older dense files carry no measured speedup
    runs = pd.concat([dense, m.runs]).dropna(subset=["measured_speedup", col])
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
        settings = _at_setting(method)  # points at settings, not along a speedup: no line, each one labelled
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
    targets = _points(runs["point"])
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
    ax.set_yticks(range(len(first)), labels=[f"{method_name(r.method)} (seed {r.seed})" for r in first.itertuples()])
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
    spread = lat.get("spread") if isinstance(lat.get("spread"), dict) else {}
    if spread or "max_spread" in lat:
        latency += ("; spread (half-width of the 95% CI, relative): "
                    + ", ".join(f"{k} ±{100 * v:.1f}%" for k, v in spread.items() if isinstance(v, (int, float)))
                    + (f"; max ±{100 * lat['max_spread']:.1f}%" if isinstance(lat.get("max_spread"), (int, float))
                       else ""))
    pruned = m.runs.dropna(subset=["num_layers"])
    evaluated = pd.concat([m.dense, m.runs.dropna(subset=["mean_accuracy"])])
    sprint = pruned[pruned["method"].isin(ABLATION)]
    points = _points(m.runs["point"])
    targets, settings = [p for p in points if p.startswith("x")], [p for p in points if not p.startswith("x")]
    return [
        f"## {m.name}", "",
        f"- Calibration (pruning): {_unique(pruned['calibration'])} (sequences × tokens)",
        f"- Evaluation: limit per task = {_unique(evaluated['eval_limit'])}; tasks: "
        + (", ".join(f"{t} ({k})" for t, k in m.tasks.items()) or "none"),
        f"- Latency: {latency}",
        f"- SPRINT hyper-parameters: {_unique(sprint['hparams'])}",
        f"- Methods: {', '.join(map(method_name, _order(m.runs['method']))) or 'none'}; "
        f"targets: {', '.join(point_label(p) for p in targets) or 'none'}; "
        + (f"weight settings: {', '.join(map(point_label, settings))}; " if settings else "")
        + f"seeds: {_unique(m.runs['seed'])}",
        "- Missing: " + ("; ".join(m.missing) if m.missing else "nothing"),
        *_departures(m), "",
        "> Several seeds: numbers are **mean ± sample std over seeds** (the `seeds` column says how many). "
        "One seed: each number carries its own uncertainty, accuracy **± its evaluation stderr** (lm-eval; the mean "
        "accuracy's is sqrt(Σ stderr²) / tasks), perplexity and measured speedup with their **[95% CI]**. "
        "Accuracies in %, times in seconds.", "",
    ]


PAPER = {"calibration": "128×2048", "prompt_len": 1024, "gen_len": 512, "ppl_seq_len": 2048}


def _departures(m: ModelResults) -> list[str]:
    """Where this run's protocol departs from the paper's (sizes read from the results), one bullet each."""
    lat, out = m.latency or {}, []
    calibration = _unique(m.runs.dropna(subset=["num_layers"])["calibration"])
    if calibration not in ("unknown", PAPER["calibration"]):
        out.append(f"calibration {calibration} tokens (paper: {PAPER['calibration']} of WikiText-2 train)")
    if lat and (lat.get("prompt_len"), lat.get("gen_len")) != (PAPER["prompt_len"], PAPER["gen_len"]):
        out.append(f"latency of {lat.get('gen_len')} tokens after a {lat.get('prompt_len')}-token prompt (paper: "
                   f"{PAPER['gen_len']} after {PAPER['prompt_len']}, fp16 on an A100)")
    protocol = lat.get("protocol") if isinstance(lat.get("protocol"), dict) else {}
    if protocol.get("timing") == "step" or protocol.get("threads"):
        out.append(f"timed {'step by step' if protocol.get('timing') == 'step' else 'by whole generate calls'}"
                   + (f" on {protocol['threads']} CPU thread(s)" if protocol.get("threads") else "")
                   + " (paper: whole generate calls; see the README's measured-speedup section)")
    seq = _unique(pd.concat([m.dense, m.runs])["ppl_seq_len"].dropna().astype(int))
    if seq not in ("unknown", str(PAPER["ppl_seq_len"])):
        out.append(f"perplexity on {seq}-token windows (paper: {PAPER['ppl_seq_len']})")
    return ["- Departures from the paper's protocol (budget): " + "; ".join(out)] if out else []


def _settings_note(m: ModelResults) -> list[str]:
    """What the rows of one-shot methods (Wanda, SparseGPT, SliceGPT, LLM-Pruner) are, when there are any."""
    methods = [meth for meth in _order(m.runs["method"]) if _at_setting(meth)]
    if not methods:
        return []
    lat = m.latency or {}
    zeroing = [meth for meth in methods if REGISTRY[meth].kind == "weights"]
    slicing = [meth for meth in methods if REGISTRY[meth].kind == "slicing"]
    what = []
    if zeroing:
        sparse = sorted(k for k in m.runs.loc[m.runs["method"].isin(zeroing), "kernels"].dropna().unique()
                        if k != "dense")
        how = (f"2:4 models were timed with PyTorch's {', '.join(sparse)} kernels, the others with the dense ones"
               if sparse else "they run the dense kernels")
        what.append(f"{', '.join(map(method_name, zeroing))} zero weights inside every decoder linear and keep its dense "
                    f"shape, so on this run's device ({lat.get('device', 'unknown')}) {how} "
                    "(2:4: 2 of every 4 weights kept; 50% unstr.: half of every row's weights zeroed)")
    if slicing:
        what.append(f"{', '.join(map(method_name, slicing))} rotates the residual stream and deletes a share of its width "
                    "(25% sliced: a quarter), so its matrices are smaller")
    structured = [meth for meth in methods if REGISTRY[meth].kind == "structured"]
    if structured:
        what.append(f"{', '.join(map(method_name, structured))} removes a share of the query heads and MLP channels of the "
                    "middle layers (20% heads/channels: a fifth), without its optional LoRA recovery")
    return ["_Settings_: " + "; ".join(what) + ". No target sets their ratio: their speedup is measured as for every "
            "model, and they are compared with each other at the same setting, not with the sublayer methods at a "
            "target.", ""]


def _budget_notes(m: ModelResults) -> tuple[list[str], list[str]]:
    """Markdown lines naming the budget options that depart from the papers' protocol: (pruning, evaluation)."""
    pruning: list[str] = []
    evaluation: list[str] = []
    few = m.runs[m.runs["method"].isin(("sleb", "blockpruner")) & (m.runs["ppl_windows"] < m.runs["calibration_n"])]
    if not few.empty:
        windows, methods = few["ppl_windows"].astype(int), _order(few["method"])
        pruning += [
            f"_Budget_: {' and '.join(map(method_name, methods))} scored perplexity on {_unique(windows)} "
            f"calibration window{'s' if windows.max() > 1 else ''} of "
            f"{_unique(few['calibration_seq_len'].astype(int))} tokens (papers: the whole calibration set, "
            f"{_unique(few['calibration'])}), which makes {'them' if len(methods) > 1 else 'it'} cheaper and "
            f"handicaps {'their' if len(methods) > 1 else 'its'} choices.", ""]
    if (pd.concat([m.dense, m.runs.dropna(subset=["mean_accuracy"])])["eval_limit"] != "all").any():
        evaluation += [f"_Budget_: accuracy on a seeded random subset of each task's documents "
                       f"({_docs(m, total=True)}; papers: every document).", ""]
    return pruning, evaluation


def _section(title: str, shown: pd.DataFrame, data: pd.DataFrame, csv: Path, out: list[Path], note: str = "",
             empty: str = "_no data_") -> list[str]:
    """Titled Markdown table ``shown``; its numeric form ``data`` goes to ``csv`` (appended to ``out``)."""
    if shown.empty:
        return [f"### {title}", "", empty, ""]
    out.append(atomic_write_text(csv, data.round(6).to_csv(index=False)))
    return [f"### {title}", "", *([note, ""] if note else []), markdown_table(shown), "",
            f"CSV: [{csv.name}](report/{csv.name})", ""]


def _speedup_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model (method, point, seed) with an estimate (the sublayer methods): estimated and measured speedup (95%
    CI, spread) and |est − meas| / meas."""
    speed = runs.dropna(subset=["estimated_speedup", "measured_speedup"])[
        [*KEYS, "estimated_speedup", "measured_speedup", "measured_speedup_lo", "measured_speedup_hi",
         "speedup_spread"]]
    return speed.assign(rel_error_pct=100 * (speed["estimated_speedup"] / speed["measured_speedup"] - 1).abs())


def _ci(value: float, lo: float, hi: float, fmt: str = "{:.3f}") -> str:
    """``value [lo, hi]``, just the value without a CI, ``–`` without a value."""
    if math.isnan(value):
        return "–"
    return fmt.format(value) + ("" if math.isnan(lo) else f" [{fmt.format(lo)}, {fmt.format(hi)}]")


def _spread(value: float) -> str:
    return "–" if math.isnan(value) else f"±{value:.1f}%"


def _speedup_shown(speed: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "method": speed["method"].map(method_name), "target": speed["point"].map(point_label), "seed": speed["seed"],
        "estimated (×)": speed["estimated_speedup"].map("{:.3f}".format),
        "measured (×) [95% CI]": [_ci(*r) for r in speed[["measured_speedup", "measured_speedup_lo",
                                                           "measured_speedup_hi"]].to_numpy()],
        "spread": speed["speedup_spread"].map(_spread),
        "rel. error (%)": speed["rel_error_pct"].map("{:.2f}".format)})


def _model_report(m: ModelResults, folder: Path, out: list[Path]) -> list[str]:
    """Tables and figures of one model (files appended to ``out``) -> its Markdown lines."""
    def path(suffix: str) -> Path:
        return folder / f"{m.name}_{suffix}"

    paired, tests = _paired_section(m, path("paired.csv"), out)
    prune_budget, eval_budget = _budget_notes(m)
    acc, time = ("mean acc. (%)", "mean_accuracy", "{:.2f}"), ("pruning time (s)", "pruning_time_s", "{:.1f}")
    ppl = ("WikiText-2 ppl", "wikitext2_ppl", "{:.2f}")
    spec = [("measured speedup (×)", "measured_speedup", "{:.3f}"),
            ("estimated speedup (×)", "estimated_speedup", "{:.3f}"),
            *((f"{t} (%)", f"task:{t}", "{:.2f}") for t in m.tasks), acc, ppl, time]
    main = aggregate(pd.concat([m.dense, m.runs]), [c for _, c, _ in spec] + ["speedup_spread", "ppl_tokens"])
    main_shown = _display(main, spec)
    main_shown.insert(4, "speedup spread", main["speedup_spread_mean"].map(_spread))
    main_shown["acc. vs best"] = _marks(tests, main, "acc")
    perplexity = _display(main, [ppl])
    perplexity["ppl vs best"] = _marks(tests, main, "ppl")
    perplexity["tokens"] = main["ppl_tokens_mean"].map(lambda v: "–" if math.isnan(v) else f"{v:.0f}")
    abl_spec = [acc, time, ("tunings", "num_tunings", "{:.1f}"), ("peak RSS (MB)", "peak_rss_mb", "{:.0f}")]
    ablation = _sort(aggregate(m.runs[m.runs["method"].isin(ABLATION)], [c for _, c, _ in abl_spec]),
                     ("point", "method"))
    speed = _speedup_table(m.runs)
    tokens = _unique(pd.concat([m.dense, m.runs])["ppl_tokens"].dropna().astype(int))
    compared = tests.dropna(subset=["acc_mark"])
    inseparable = not compared.empty and not (compared["acc_mark"] == "worse").any()
    main_lines = _section("Main results", main_shown, main, path("main.csv"), out,
                          "Measured speedup: the per-round ratio of dense to pruned generation time over interleaved "
                          "rounds, its Hodges-Lehmann estimate (the median with `estimator: median`) [95% CI]; spread: the "
                          "CI's relative half-width (mean over seeds). Dense is timed against a second copy of "
                          "itself (≈ 1 up to noise). " + VS_BEST) + _settings_note(m) + prune_budget + eval_budget
    ppl_cols = ["method", "point", "seeds", *(c for c in main if c.startswith(("wikitext2_ppl", "ppl_tokens")))]
    ppl_lines = _section("Perplexity", perplexity, main[ppl_cols],
                         path("perplexity.csv"), out,
                         f"WikiText-2 test perplexity on {tokens} tokens per model (one seed: [95% CI], bootstrap "
                         "over windows). " + VS_BEST)
    lines = _header(m)
    if inseparable:
        lines += ["### Headline: perplexity", "",
                  f"**Accuracy at this evaluation size ({_docs(m)} documents per task) cannot separate the methods**: at "
                  "every target the paired 95% CI of every method's difference from the best mean accuracy "
                  "includes 0. Perplexity is therefore the headline; the accuracy table follows.", ""]
        lines += ppl_lines + main_lines
    else:
        lines += main_lines + ppl_lines
    lines += paired
    lines += _section("Ablation (paper Table 1)", _display(ablation, abl_spec), ablation, path("ablation.csv"), out,
                      "SPRINT-l: no latency-aware importance; SPRINT-t: no tunability-aware sensitivity; "
                      "SPRINT-e: no activation checkpointing / fast candidate selection.")
    dense = m.dense.dropna(subset=["measured_speedup"])
    check = "" if dense.empty else (
        " Dense against a second copy of itself (a check of the protocol, ≈ 1): "
        + _ci(*dense[["measured_speedup", "measured_speedup_lo", "measured_speedup_hi"]].iloc[0])
        + f" (spread {_spread(dense['speedup_spread'].iloc[0])}).")
    lines += _section("Estimated vs measured speedup", _speedup_shown(speed), speed, path("speedup.csv"), out,
                      "Relative error |est − meas| / meas per pruned model; "
                      f"mean {speed['rel_error_pct'].mean():.2f}%." + check)
    figures = [("Perplexity vs measured speedup", plot_metric_speedup(m, path("ppl_speedup.png"), "wikitext2_ppl"), []),
               ("Accuracy vs measured speedup (paper Fig. 5)", plot_metric_speedup(m, path("accuracy_speedup.png")),
                eval_budget),
               ("Pruning time vs accuracy (paper Fig. 6)", plot_time_accuracy(m, path("time_accuracy.png")),
                prune_budget + eval_budget),
               *((f"Pruning pattern at {_x(t)} (paper Fig. 7)", plot_pattern(m, t, path(f"pattern_x{t:g}.png")), [])
                 for t in sorted(m.runs["target"].dropna().unique())),
               ("Estimated vs measured speedup", plot_speedup_estimate(m, path("speedup_estimate.png")), [])]
    lines += ["### Figures", ""]
    for caption, png, notes in figures:
        if png is not None:
            out.append(png)
            lines += [f"![{caption}](report/{png.name})", "", *notes]
    return lines


def _model_folder(metrics_file: Path) -> Path:
    """results/<model> of results/<model>/metrics/(dense.json | <method>/seed<s>/<point>.json)."""
    for parent in metrics_file.parents:
        if parent.name == "metrics":
            return parent.parent
    raise SprintError(f"{metrics_file}: not a metrics file under <results>/<model>/metrics/")


def write_report(results: Path, output: Path, metrics: list[Path] | None = None) -> list[Path]:
    """Write ``output`` (Markdown) plus its CSVs and PNGs in ``output.parent / "report"``; return every file written.

    ``metrics``: the metrics files to report (the pipeline passes those its DAG made); by default every model
    folder under ``results`` with a latency.json, metrics/ or pruned/ and every metrics file in it."""
    results, output = Path(results), Path(output)
    if not results.is_dir():
        raise SprintError(f"{results}: results folder not found")
    folder = output.parent / "report"
    chosen: dict[Path, list[Path]] | None = None
    if metrics is not None:
        for path in map(Path, metrics):
            if not path.is_file():
                raise SprintError(f"{path}: metrics file not found")
        chosen = {}
        for path in map(Path, metrics):
            chosen.setdefault(_model_folder(path), []).append(path)
        models = sorted(chosen)
    else:
        models = [d for d in sorted(results.iterdir())
                  if d.is_dir() and any((d / n).exists() for n in ("latency.json", "metrics", "pruned"))]
    written: list[Path] = []
    lines = ["# SPRINT report", "", f"Results folder: `{results}`.", ""]
    if not models:
        lines += [f"No model results found (expected `{results}/<model>/` with latency.json, metrics/ or pruned/).", ""]
    for d in models:
        lines += _model_report(load_model(d, None if chosen is None else chosen[d]), folder, written)
    bench = load_benchmarks(results / "benchmarks", [d.name for d in models])
    lines += _section("Pipeline stages (Snakemake benchmarks)", bench.round(1), bench, folder / "benchmarks.csv",
                      written, "Per rule (and model): number of jobs, summed wall and CPU seconds, max RSS (MB)."
                      + (f" Total wall time: {bench['wall_s'].sum():.1f} s." if not bench.empty else ""),
                      f"_missing: no benchmark TSVs under `{results / 'benchmarks'}`_")
    written.append(atomic_write_text(output, "\n".join(lines).rstrip() + "\n"))
    return written
