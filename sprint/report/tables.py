"""The report's numbers: the measures (:data:`MEASURES`, the one definition the report and the study use), the
mean and sample std over seeds, each method's paired test against the best, and how a number is shown with its
uncertainty."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sprint.errors import SprintError
from sprint.layout import point_label
from sprint.measure import stats
from sprint.report.load import KEYS, ModelResults
from sprint.report.names import method_name, order_methods, order_points, point_header, sort_rows

N_BOOT = 2000  # paired-bootstrap resamples
MARKS = {"best": "best", "≈": "≈ best", "worse": "worse"}


@dataclass(frozen=True)
class Measure:
    """A measure of a model's quality, as computed on its per-item data and shown."""

    key: str  # its per-item data in ModelResults.samples, and its columns in the paired tests
    name: str
    column: str  # its column in ModelResults.runs
    stat: Callable[[list[np.ndarray]], np.ndarray]  # over the paired items (sprint.measure.stats)
    higher_is_better: bool
    scale: float  # shown values and differences: stat x scale (accuracy in %, its differences in pp)
    unit: str  # of a shown value
    diff_unit: str  # of a shown difference


ACCURACY = Measure("acc", "accuracy", "mean_accuracy", stats.mean_accuracy, True, 100.0, "%", " pp")
PERPLEXITY = Measure("ppl", "perplexity", "wikitext2_ppl", stats.perplexity, False, 1.0, "", "")
MEASURES = {m.key: m for m in (ACCURACY, PERPLEXITY)}


def aggregate(runs: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Mean and sample std over seeds per (method, point): columns ``{col}_mean``, ``{col}_std`` and ``seeds``.

    A column's uncertainty columns (``{col}_se``, ``{col}_lo``, ``{col}_hi``) present in ``runs`` come along.
    """
    cols = [c for col in cols for c in (col, f"{col}_se", f"{col}_lo", f"{col}_hi") if c == col or c in runs]
    g = runs.groupby(["method", "point"], sort=False)
    out = g[cols].agg(["mean", "std"])
    out.columns = [f"{c}_{s}" for c, s in out.columns]
    out.insert(0, "seeds", g["seed"].nunique())
    return sort_rows(out.reset_index())


def error_bar(row: dict[str, Any], col: str) -> tuple[float, float, float, bool]:
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
    value, lower, upper, ci = error_bar(row, col)
    f = fmt.format
    if math.isnan(value):
        return "–"
    if ci:
        return f"{f(value)} [{f(value - lower)}, {f(value + upper)}]"
    return f(value) if math.isnan(lower) else f"{f(value)} ± {f(lower)}"


def display_table(agg: pd.DataFrame, spec: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Aggregated frame -> human table: method name, point, seeds, then one cell per spec entry (label, column,
    format)."""
    out = pd.DataFrame({"method": agg["method"].map(method_name),
                        point_header(agg["point"]): agg["point"].map(point_label), "seeds": agg["seeds"]})
    rows = agg.to_dict("records")
    for label, col, fmt in spec:
        out[label] = [_cell(row, col, fmt) for row in rows]
    return out


def with_ci(value: float, lo: float, hi: float, fmt: str = "{:.3f}") -> str:
    """``value [lo, hi]``, just the value without a CI, ``–`` without a value."""
    if math.isnan(value):
        return "–"
    return fmt.format(value) + ("" if math.isnan(lo) else f" [{fmt.format(lo)}, {fmt.format(hi)}]")


def spread_text(value: float) -> str:
    return "–" if math.isnan(value) else f"±{value:.1f}%"


def paired_tests(m: ModelResults) -> tuple[pd.DataFrame, list[str]]:
    """Per (point, seed), every pruned method against the best one by mean accuracy and by perplexity.

    Columns ``point, seed, method`` and per measure (``acc`` in %, ``ppl``): the value, ``{measure}_diff`` with
    ``_lo`` / ``_hi`` (this method − the best, paired-bootstrap 95 % CI; accuracy in percentage points) and
    ``{measure}_mark`` ("best", "≈", "worse").  A group whose methods answered different items is skipped and named
    in the returned notes.
    """
    cols = ["point", "seed", "method", *(f"{k}{s}" for k in MEASURES for s in ("", "_diff", "_lo", "_hi", "_mark"))]
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    notes = []
    points = order_points(point for method, point, _ in m.samples if method != "dense")
    groups = sorted({(point, seed) for method, point, seed in m.samples if method != "dense"},
                    key=lambda g: (points.index(g[0]), g[1]))
    for point, seed in groups:
        for key, measure in MEASURES.items():
            group = {method: m.samples[method, point, seed][key] for method in order_methods(
                k[0] for k in m.samples if k[0] != "dense" and k[1:] == (point, seed))}
            if len(group) < 2:
                continue
            try:
                verdicts = stats.compare_to_best(group, measure.stat, measure.higher_is_better, N_BOOT)
            except SprintError as e:
                notes.append(f"{key} at {point_label(point)} seed {seed} not compared: {e}")
                continue
            scale = measure.scale
            for method, v in verdicts.items():
                d = v.diff
                rows.setdefault((method, point, seed), {"method": method, "point": point, "seed": seed}).update(
                    {key: scale * v.value, f"{key}_diff": scale * d.estimate, f"{key}_lo": scale * d.lo,
                     f"{key}_hi": scale * d.hi, f"{key}_mark": v.mark})
    return sort_rows(pd.DataFrame(list(rows.values()), columns=cols), ("point", "seed", "method")), notes


def seed_marks(tests: pd.DataFrame, agg: pd.DataFrame, key: str) -> list[str]:
    """Per aggregated (method, point) row: its marks against the best by measure ``key``, one per seed in seed
    order ("" if none)."""
    marks = tests.dropna(subset=[f"{key}_mark"]).sort_values("seed").groupby(["method", "point"])[
        f"{key}_mark"].agg(lambda s: " / ".join(MARKS[v] for v in s))
    return [marks.get((r.method, r.point), "") for r in agg.itertuples()]


def summary_table(m: ModelResults, tests: pd.DataFrame) -> pd.DataFrame:
    """The headline columns per (method, point), dense first: measured speedup, mean accuracy, perplexity (cells as
    in the main table) and both paired marks against the best (``tests``: :func:`paired_tests`)."""
    spec = [("measured speedup (×)", "measured_speedup", "{:.3f}"), ("mean acc. (%)", "mean_accuracy", "{:.2f}"),
            ("WikiText-2 ppl", "wikitext2_ppl", "{:.2f}")]
    agg = aggregate(pd.concat([m.dense, m.runs]), [c for _, c, _ in spec])
    shown = display_table(agg, spec)
    shown["acc. vs best"] = seed_marks(tests, agg, "acc")
    shown["ppl vs best"] = seed_marks(tests, agg, "ppl")
    return shown


def speedup_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model (method, point, seed) with an estimate (the sublayer methods): estimated and measured speedup (95%
    CI, spread) and |est − meas| / meas."""
    speed = runs.dropna(subset=["estimated_speedup", "measured_speedup"])[
        [*KEYS, "estimated_speedup", "measured_speedup", "measured_speedup_lo", "measured_speedup_hi",
         "speedup_spread"]]
    return speed.assign(rel_error_pct=100 * (speed["estimated_speedup"] / speed["measured_speedup"] - 1).abs())
