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
from sprint.report.load import DENSE, INFORMATIVE_COL, KEYS, LLAMACPP_COLS, ModelResults
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


# Accuracy over the informative tasks (the dense score's 95% CI above chance and majority: load.with_informative):
# the one verdicts are written from; over every task: the paper's figure, shown beside it.
INFORMATIVE = Measure("acc_inf", "informative-task accuracy", INFORMATIVE_COL, stats.mean_accuracy, True, 100.0, "%",
                      " pp")
ACCURACY = Measure("acc", "accuracy", "mean_accuracy", stats.mean_accuracy, True, 100.0,
                   "%", " pp")
PERPLEXITY = Measure("ppl", "perplexity", "wikitext2_ppl", stats.perplexity, False, 1.0, "", "")
# Perplexity on the held-out corpora (evaluate.heldout_ppl: another domain, never calibrated on), the same windowing
# and paired test as WikiText-2's: a lead that holds here is not the calibration's least squares fitting its corpus.
HELDOUT = Measure("heldout", "held-out perplexity", "heldout_ppl", stats.perplexity, False, 1.0, "", "")
MEASURES = {m.key: m for m in (INFORMATIVE, ACCURACY, PERPLEXITY, HELDOUT)}
PAPERS_FIGURE = "all-task accuracy (the paper's figure)"  # ACCURACY's name beside the informative-task accuracy


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
                k[0] for k in m.samples if k[0] != "dense" and k[1:] == (point, seed))
                if key in m.samples[method, point, seed]}  # acc_inf: only where the informative tasks are known
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
    """The headline columns per (method, point), dense first: measured speedup (and the llama.cpp speedup where one
    was read: :func:`has_llamacpp`), mean accuracy, perplexity (cells as in the main table) and both paired marks
    against the best (``tests``: :func:`paired_tests`)."""
    spec = [("measured speedup (×)", "measured_speedup", "{:.3f}"), *llamacpp_spec(m),
            (INFORMATIVE_LABEL, INFORMATIVE_COL, "{:.2f}"), (ALL_TASKS_LABEL, "mean_accuracy", "{:.2f}"),
            ("WikiText-2 ppl", "wikitext2_ppl", "{:.2f}")]
    agg = aggregate(pd.concat([m.dense, m.runs]), [c for _, c, _ in spec + heldout_spec(m)])
    shown = display_table(agg, spec)
    shown.insert(list(shown.columns).index(ALL_TASKS_LABEL), "inf. acc. vs best", seed_marks(tests, agg, "acc_inf"))
    shown["ppl vs best"] = seed_marks(tests, agg, "ppl")
    for label, col, fmt in heldout_spec(m):
        shown[label] = display_table(agg, [(label, col, fmt)])[label]
        shown["held-out ppl vs best"] = seed_marks(tests, agg, "heldout")
    if m.informative is None:  # unknown: the all-task mean alone, with its marks
        shown = shown.drop(columns=[INFORMATIVE_LABEL, "inf. acc. vs best"])
        shown.insert(list(shown.columns).index(ALL_TASKS_LABEL) + 1, "acc. vs best", seed_marks(tests, agg, "acc"))
    return shown


def heldout_corpus(m: ModelResults) -> str:
    """The held-out perplexity corpora of ``m``'s evaluations ("" when none was scored)."""
    runs = pd.concat([m.dense, m.runs])
    if "heldout_ppl" not in runs or not runs["heldout_ppl"].notna().any():
        return ""
    return " / ".join(dict.fromkeys(c for c in runs["heldout_corpus"].dropna() if c))


def heldout_spec(m: ModelResults) -> list[tuple[str, str, str]]:
    """The held-out perplexity's cell spec (label, column, format) where ``m`` has one; none otherwise."""
    corpus = heldout_corpus(m)
    return [(f"held-out ppl ({corpus})", "heldout_ppl", "{:.2f}")] if corpus else []


INFORMATIVE_LABEL = "informative-task acc. (%)"
LLAMACPP_LABEL = "llama.cpp speedup (×)"
PHASES = {"e2e": "end-to-end (a prompt, then its generation)", "pp": "prompt-processing", "tg": "decode"}


def has_llamacpp(m: ModelResults) -> bool:
    """Whether ``m`` has a llama.cpp speedup for any of its models (a llamacpp.json read that covers one)."""
    return m.llamacpp is not None and bool(pd.concat([m.dense, m.runs])[LLAMACPP_COLS[0]].notna().any())


def llamacpp_spec(m: ModelResults) -> list[tuple[str, str, str]]:
    """The llama.cpp speedup's cell spec (label, column, format) where ``m`` has one; none otherwise."""
    return [(LLAMACPP_LABEL, LLAMACPP_COLS[0], "{:.3f}")] if has_llamacpp(m) else []


def llamacpp_legend(m: ModelResults) -> str:
    """What the llama.cpp speedup column is: which of the export's measurements (llamacpp.json's headline)."""
    i = m.llamacpp or {}
    estimate = "Hodges-Lehmann estimate" if i.get("estimator") == "hodges-lehmann" else i.get("estimator", "?")
    return (f"llama.cpp speedup: the {PHASES.get(i.get('phase'), i.get('phase'))} speedup over the dense model, "
            f"both served as GGUFs by llama.cpp ({i.get('engine')}) with {i.get('outtype')} weights on "
            f"{i.get('threads')} thread{'s' if i.get('threads') != 1 else ''}, a {i.get('prompt_len')}-token prompt "
            f"then {i.get('gen_len')} decoded tokens; the {estimate} over interleaved rounds [95% CI] "
            "(`sprint export`, docs/export.md), beside the speedup measured in PyTorch. Dense: a second copy of its "
            "GGUF (≈ 1 up to noise); –: not exported.")
ALL_TASKS_LABEL = "all-task acc. (%) (paper's figure)"


def chance_table(m: ModelResults) -> pd.DataFrame:
    """The per-task chance table shown: task, chance, majority (binary tasks), dense [95% CI], informative."""
    c = m.chance
    pct = lambda v: "–" if math.isnan(v) else f"{v:.1f}"  # noqa: E731
    return pd.DataFrame({
        "task": c["task"], "chance (%)": c["chance"].map(pct), "majority (%)": c["majority"].map(pct),
        "dense (%) [95% CI]": [with_ci(*r, fmt="{:.1f}") for r in c[["dense", "dense_lo", "dense_hi"]].to_numpy()],
        "informative": c["informative"].map(lambda v: "unknown" if math.isnan(v) else "yes" if v else "no")})


def retained(acc: float, dense: float, chance: float) -> float:
    """Retained above chance: (acc − chance) / (dense − chance), in %; NaN unless dense lies above chance."""
    if any(math.isnan(v) for v in (acc, dense, chance)) or dense <= chance:
        return math.nan
    return 100 * (acc - chance) / (dense - chance)


def bias_flags(m: ModelResults, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per pruned model (method, point, seed) and task, pruned − dense accuracy (pp) with its paired-bootstrap 95%
    CI; ``flag`` where the pruned model beats its dense model by more than that noise (the CI's lower end above 0):
    a gain from pruning is a shifted answer bias, not retained skill.  Binary tasks carry both models' answer
    shares (``shares``: "no 98 / yes 2 → no 43 / yes 57") and ``shift``: pruned − dense share of the second answer
    (pp, paired-bootstrap 95% CI over the same documents), ``shifted`` where that CI excludes 0."""
    cols = [*KEYS, "task", "diff", "lo", "hi", "flag", "shares", "shift", "shift_lo", "shift_hi", "shifted"]
    dense = m.samples.get(DENSE)
    rows = []
    if dense is None:
        return pd.DataFrame(rows, columns=cols)
    for key, sample in m.samples.items():
        if key == DENSE or key[0] == "dense":
            continue
        for task in m.tasks:
            if task not in sample["acc"] or task not in dense["acc"]:
                continue
            try:
                d = stats.paired_bootstrap({task: sample["acc"][task]}, {task: dense["acc"][task]},
                                           stats.mean_accuracy, n_boot)
            except SprintError:
                continue
            mine, theirs = m.answers.get(key, {}).get(task), m.answers.get(DENSE, {}).get(task)
            shares = "" if not (mine and theirs) else (
                " / ".join(f"{a} {v:.0f}" for a, v in theirs.items()) + " → "
                + " / ".join(f"{a} {v:.0f}" for a, v in mine.items()))
            shift = math.nan, math.nan, math.nan
            if task in sample.get("second", {}) and task in dense.get("second", {}):
                try:
                    s = stats.paired_bootstrap({task: sample["second"][task]}, {task: dense["second"][task]},
                                               stats.mean_accuracy, n_boot)
                    shift = 100 * s.estimate, 100 * s.lo, 100 * s.hi
                except SprintError:
                    pass
            rows.append({**dict(zip(KEYS, key)), "task": task, "diff": 100 * d.estimate, "lo": 100 * d.lo,
                         "hi": 100 * d.hi, "flag": d.lo > 0, "shares": shares, "shift": shift[0],
                         "shift_lo": shift[1], "shift_hi": shift[2],
                         "shifted": not math.isnan(shift[1]) and (shift[1] > 0 or shift[2] < 0)})
    return sort_rows(pd.DataFrame(rows, columns=cols), ("method", "point", "seed"))


def retained_table(m: ModelResults, flags: pd.DataFrame) -> pd.DataFrame:
    """Per (method, point): each task's accuracy (mean over seeds) with its retained share above chance, ⚑ where a
    seed's model beats the dense one on the task beyond the paired noise (``flags``: :func:`bias_flags`)."""
    chance = m.chance.set_index("task")
    cols = [f"task:{t}" for t in m.tasks]
    agg = aggregate(m.runs.dropna(subset=["mean_accuracy"]), cols)
    out = pd.DataFrame({"method": agg["method"].map(method_name), point_header(agg["point"]): agg["point"].map(
        point_label), "seeds": agg["seeds"]})
    flagged = flags[flags["flag"]] if not flags.empty else flags
    for task in m.tasks:
        c, d = chance.loc[task, "chance"], chance.loc[task, "dense"]
        cells = []
        for r in agg.to_dict("records"):
            acc = r[f"task:{task}_mean"]
            kept = retained(acc, d, c)
            mark = "" if flagged.empty or flagged[(flagged["method"] == r["method"]) & (flagged["point"] == r["point"])
                                                  & (flagged["task"] == task)].empty else " ⚑"
            cells.append("–" if math.isnan(acc) else f"{acc:.1f} ({'–' if math.isnan(kept) else f'{kept:.0f}%'})"
                         + mark)
        informative = chance.loc[task, "informative"]
        out[f"{task}{'' if informative == 1.0 else ' (not inf.)'}"] = cells
    return out


def speedup_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model (method, point, seed) with an estimate (the sublayer methods): estimated and measured speedup (95%
    CI, spread) and |est − meas| / meas."""
    speed = runs.dropna(subset=["estimated_speedup", "measured_speedup"])[
        [*KEYS, "estimated_speedup", "measured_speedup", "measured_speedup_lo", "measured_speedup_hi",
         "speedup_spread"]]
    return speed.assign(rel_error_pct=100 * (speed["estimated_speedup"] / speed["measured_speedup"] - 1).abs())
