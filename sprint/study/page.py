"""The study's results page from its committed cells: the short answer, the machine and settings, the main
comparison in a table and in words, each controlled change (the same methods under one changed setting, paired
against the default), and the cells; with the full report beside it.

Every comparison of two models is a :class:`Comparison` (paired bootstrap over the items both answered), from which
the page's text is rendered."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sprint.errors import SprintError
from sprint.io import atomic_write_text
from sprint.layout import point_label, report_folder
from sprint.measure import stats
from sprint.pipeline.config import PER_MODEL_PRUNE
from sprint.report import (MEASURES, ModelResults, aggregate, load_benchmarks, load_results, markdown_table,
                           method_name, paired_tests, summary_table, write_report)
from sprint.report.load import metrics_files
from sprint.report.markdown import find_sweeps, report_file
from sprint.report.tables import (ACCURACY, HELDOUT, INFORMATIVE, PAPERS_FIGURE, PERPLEXITY, Measure, bias_flags,
                                  chance_table, has_llamacpp, heldout_corpus, llamacpp_legend)
from sprint.report.uncertainty import uncertainty_lines
from sprint.study.spec import RESULTS, Study

AGAINST = {"better": "more accurate than", "worse": "less accurate than", "≈": "not separable in accuracy from"}


def accuracy_measure(m: ModelResults) -> Measure:
    """The accuracy the page's comparisons and verdicts are written from: over the informative tasks where they are
    known (the dense model's chance-aware reading), else over all tasks."""
    return INFORMATIVE if m.informative is not None else ACCURACY


@dataclass(frozen=True)
class Comparison:
    """One model − another by ``measure`` on the items both answered, with its paired-bootstrap 95% CI, in the
    measure's scale (accuracy in percentage points), over ``seeds`` calibration seeds."""

    measure: Measure
    diff: float
    lo: float
    hi: float
    seeds: int

    @property
    def verdict(self) -> str:
        """For the first model: "better" or "worse" (the CI excludes 0 on that side), "≈" (it includes 0)."""
        higher = self.measure.higher_is_better
        if (self.lo > 0) if higher else (self.hi < 0):
            return "better"
        if (self.hi < 0) if higher else (self.lo > 0):
            return "worse"
        return "≈"

    @property
    def interval(self) -> str:
        """``+1.00 [+0.50, +1.50]``."""
        return f"{self.diff:+.2f} [{self.lo:+.2f}, {self.hi:+.2f}]"

    @property
    def reading(self) -> str:
        """The interval with its unit and verdict: ``+1.00 [+0.50, +1.50] pp (better)``."""
        return f"{self.interval}{self.measure.diff_unit} ({self.verdict})"


def compare(a: tuple[ModelResults, str], b: tuple[ModelResults, str], point: str, seeds: list[int],
            measure: Measure) -> Comparison | None:
    """Method ``a[1]`` of the results ``a[0]`` − method ``b[1]`` of ``b[0]`` at ``point``; over several calibration
    seeds, on each item's mean over them (:func:`sprint.measure.stats.over_seeds`).  None unless both models have
    every seed's per-item data."""
    mine, theirs = ([m.samples.get((method, point, seed)) for seed in seeds] for m, method in (a, b))
    if not all(mine + theirs) or not all(measure.key in s for s in mine + theirs):
        return None
    d = stats.paired_bootstrap(stats.over_seeds([s[measure.key] for s in mine]),
                               stats.over_seeds([s[measure.key] for s in theirs]), measure.stat)
    return Comparison(measure, measure.scale * d.estimate, measure.scale * d.lo, measure.scale * d.hi, len(seeds))


def _shown(c: Comparison | None, reading: bool = True) -> str:
    """A comparison's reading (or just its interval); '' without one."""
    return "" if c is None else c.reading if reading else c.interval


@dataclass(frozen=True)
class Verdict:
    """SPRINT among the methods at one point by one measure: the best method by the mean over seeds, and SPRINT's
    paired marks against the best."""

    point: str
    measure: Measure
    seeds: int
    best: str
    short: str  # for the page's short answer
    sentence: str  # the line of the main comparison
    values: tuple[float, str, float] = (math.nan, "", math.nan)  # SPRINT's mean, the rival (best or next), its mean


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n > 1 else ''}"


def _variant(study: Study, name: str) -> str:
    """What a model entry changes against the first one (its own calibration / latency / SPRINT settings)."""
    entry = study.config["base"]["models"][name]
    entry = entry if isinstance(entry, dict) else {}
    parts = [f"calibration {', '.join(f'{k}={v}' for k, v in entry['calibration'].items())}"
             if "calibration" in entry else "",
             f"latency {entry['latency'].get('prompt_len', '?')}+{entry['latency'].get('gen_len', '?')} tokens"
             if "latency" in entry else "",
             *(f"{key} {entry[key]}" for key in PER_MODEL_PRUNE if key in entry)]
    return "; ".join(p for p in parts if p) or "the default setting"


def _verdicts(m: ModelResults, tests: pd.DataFrame) -> list[Verdict]:
    """Per point and measure, the best method by the mean over seeds and SPRINT's paired marks (``tests``:
    :func:`sprint.report.paired_tests`); with several seeds, SPRINT against the best (or, where SPRINT is best, the
    next) over the seeds pooled."""
    out = []
    agg = aggregate(m.runs, [measure.column for measure in MEASURES.values()])
    for point in dict.fromkeys(agg["point"]):
        rows = agg[agg["point"] == point]
        if "sprint" not in set(rows["method"]) or len(rows) < 2:
            continue
        for measure in MEASURES.values():
            values = rows.set_index("method")[f"{measure.column}_mean"]
            if values.isna().any():  # the informative tasks unknown: no verdict by them
                continue
            best = values.idxmax() if measure.higher_is_better else values.idxmin()
            key = measure.key
            marks = tests[(tests["method"] == "sprint") & (tests["point"] == point)][f"{key}_mark"].dropna().tolist()
            others = tests[(tests["method"] != "sprint") & (tests["point"] == point)]
            counts = ", ".join(f"{mark} in {marks.count(mark)}" for mark in ("best", "≈", "worse") if mark in marks)
            worse = marks.count("worse")
            if best == "sprint":
                beaten = (others[f"{key}_mark"] == "worse").all() and not others.empty
                sentence = ("SPRINT is best and every other method is worse in the paired test" if beaten else
                            "SPRINT is best, but not every other method is separable from it")
                short = "best, every other method worse (paired)" if beaten else "best by the mean, not separable " \
                        "from every other method"
            elif worse and worse == len(marks):
                sentence = f"{method_name(best)} is best; SPRINT is worse than it in the paired test"
                short = f"worse than {method_name(best)} (paired{', every seed' if worse > 1 else ''})"
            elif worse:
                sentence = (f"{method_name(best)} is best by the mean; SPRINT is worse than it in the paired test in "
                            f"{worse} of {len(marks)} seeds")
                short = f"worse than {method_name(best)} in {worse} of {len(marks)} seeds (paired)"
            else:
                sentence = f"{method_name(best)} is best; SPRINT is indistinguishable from it in the paired test"
                short = f"not separable from {method_name(best)}, the best by the mean"
            n = int(rows["seeds"].max())
            others_by_mean = values.drop("sprint")
            rival = best if best != "sprint" else (others_by_mean.idxmax() if measure.higher_is_better
                                                   else others_by_mean.idxmin())
            both = sorted(seed for method, p, seed in m.samples if method == "sprint" and p == point
                          and (rival, p, seed) in m.samples)
            pooled = compare((m, "sprint"), (m, rival), point, both, measure) if len(both) > 1 else None
            if pooled:
                sentence += f"; over the {pooled.seeds} seeds pooled, SPRINT − {method_name(rival)} {pooled.reading}"
                short += f"; {pooled.seeds} seeds pooled: SPRINT − {method_name(rival)} {pooled.reading}"
            unit = measure.unit
            name = PAPERS_FIGURE if measure is ACCURACY and m.informative is not None else measure.name
            out.append(Verdict(point, measure, n, best, short,
                               f"- **{point_label(point)}, {name}** ({_seeds(n)}): {sentence} "
                               f"(SPRINT {values['sprint']:.2f}{unit}, {'next ' if best == 'sprint' else ''}"
                               f"{method_name(rival)} {values[rival]:.2f}{unit}; SPRINT's marks by seed: "
                               f"{counts or 'none'}).", (float(values["sprint"]), rival, float(values[rival]))))
    return out


def _in_domain_and_held_out(verdicts: list[Verdict], heldout: str) -> list[str]:
    """Per point, SPRINT's perplexity on WikiText-2 (the calibration's corpus) beside the held-out corpus's: where its
    standing differs between the two, say which and by how much (relative to the rival of each)."""
    lines = []
    by = {(v.point, v.measure.key): v for v in verdicts}
    for point in dict.fromkeys(v.point for v in verdicts):
        wiki, held = by.get((point, PERPLEXITY.key)), by.get((point, HELDOUT.key))
        if not (wiki and held):
            continue

        def gap(v: Verdict) -> str:
            mine, rival, theirs = v.values
            return (f"SPRINT {mine:.2f} against {'the next, ' if v.best == 'sprint' else ''}{method_name(rival)} "
                    f"{theirs:.2f} ({100 * (mine / theirs - 1):+.0f}%)")

        lead_wiki, lead_held = wiki.best == "sprint", held.best == "sprint"
        if lead_wiki == lead_held:
            how = (f"SPRINT's perplexity is the lowest on both" if lead_wiki else
                   f"SPRINT's perplexity is not the lowest on either")
        else:
            how = (f"**SPRINT's perplexity lead holds on WikiText-2, the corpus its least squares fit, and not on "
                   f"held-out {heldout}**" if lead_wiki else
                   f"SPRINT's perplexity is the lowest on held-out {heldout} but not on WikiText-2")
        lines.append(f"- In-domain against held-out text at {point_label(point)} ({_seeds(wiki.seeds)}): {how}. "
                     f"WikiText-2: {gap(wiki)}; {wiki.short}. {heldout}: {gap(held)}; {held.short}.")
    return lines


def _summary(verdicts: list[Verdict], turns: list[str], informative: list[str] | None = None,
             tasks: list[str] = (), heldout: str = "") -> list[str]:
    """The page's answer in a few lines: the verdicts of the main comparison, then each controlled change's lines
    (from :func:`_controlled`)."""
    lines = ["## In short", "",
             "Generated from the paired tests below (same documents and windows for every model; one line per "
             "measure, then each controlled change on SPRINT itself and against the default setting's rivals):", ""]
    accuracy = [v for v in verdicts if v.measure is INFORMATIVE]
    paper = [v for v in verdicts if v.measure is ACCURACY]
    perplexity = [v for v in verdicts if v.measure is PERPLEXITY]
    uninformative = [t for t in tasks if t not in (informative or [])]
    lines.append(f"- Accuracy is read on the **informative tasks** ({', '.join(informative) or 'none'}): those on "
                 "which the dense model's 95% CI lies above chance and above always giving the majority answer "
                 + (f"({', '.join(uninformative)} not: no signal for pruning to keep). The all-task mean, the "
                    "paper's figure, is shown beside it." if uninformative else
                    "(every task evaluated here is).") if informative is not None else
                 "- The informative tasks are unknown (no dense evaluation with chance levels): accuracy verdicts "
                 "use the all-task mean.")
    if not accuracy and informative is None:
        accuracy = paper
    if accuracy:
        won = [v for v in accuracy if v.best == "sprint"]
        behind = [v for v in accuracy if v.best != "sprint" and v.short.startswith("worse")
                  and "seeds (paired)" not in v.short.split(";")[0]]  # every seed worse, not some
        ahead = [v for v in accuracy if v.best == "sprint" and "every other method worse" in v.short]
        others = "; ".join(f"{method_name(v.best)} at {point_label(v.point)}" for v in accuracy if v.best != "sprint")
        others = f" (the best: {others})" if others else ""
        lowest = [v for v in perplexity if v.best == "sprint"]
        # "does not hold" only where SPRINT is behind beyond the paired noise in every seed; where the differences
        # are within the noise the data neither carry the claim nor refute it
        holds = len(won) == len(accuracy)
        where = lambda vs: ", ".join(point_label(v.point) for v in vs)  # noqa: E731
        resolved = "; ".join(part for part in (
            f"SPRINT is behind the best beyond the paired noise at {len(behind)} of {len(accuracy)} "
            f"({where(behind)})" if behind else "",
            f"ahead of every other method beyond it at {len(ahead)} ({where(ahead)})" if ahead else "",
            f"at {'the other' if behind or ahead else 'every'} target"
            f"{'s' if len(accuracy) - len(behind) - len(ahead) > 1 else ''} the differences are within the noise"
            if len(behind) + len(ahead) < len(accuracy) else "") if part)
        lines.append(f"- **The paper's claim, SPRINT the most accurate at every speedup, "
                     f"{'holds' if holds else f'does not hold at {where(behind)}' if behind else 'is not shown'}"
                     f" here**: SPRINT has the best mean "
                     f"{accuracy[0].measure.name} at {len(won)} of {len(accuracy)} targets{others} and the lowest "
                     f"WikiText-2 perplexity at {len(lowest)} of {len(perplexity)}; {resolved}.")
        if paper and accuracy[0].measure is not ACCURACY:
            best_paper = "; ".join(f"{method_name(v.best)} at {point_label(v.point)}" for v in paper)
            lines.append(f"- The paper's figure, the all-task mean (not used for the verdict: it includes the "
                         f"uninformative tasks): best {best_paper}.")
    lines += _in_domain_and_held_out(verdicts, heldout)
    for measure in MEASURES.values():
        found = [f"at {point_label(v.point)} ({_seeds(v.seeds)}), {v.short}" for v in verdicts if v.measure is measure]
        if measure is INFORMATIVE and informative is None:
            continue
        if measure is HELDOUT and not heldout:
            continue
        name = PAPERS_FIGURE if measure is ACCURACY and informative is not None else measure.name
        lines.append(f"- SPRINT's {name} among the methods at its targets: "
                     f"{'; '.join(found) if found else 'no target with SPRINT and another method done yet'}.")
    return lines + turns + [""]


def _detectable(m: ModelResults) -> list[str]:
    ACC = accuracy_measure(m)  # noqa: N806
    """What the paired test can see at this study's size: the difference it finds with 80% power (5% two-sided),
    from the spread of the pairs SPRINT forms with every other method at the same point and seed."""
    acc, ppl = [], []  # in pp; in % of SPRINT's perplexity
    for (method, point, seed), sample in m.samples.items():
        ref = m.samples.get(("sprint", point, seed))
        if method == "sprint" or not ref:
            continue
        acc.append(ACC.scale * stats.detectable_difference(ref[ACC.key], sample[ACC.key], ACC.stat))
        sprint_ppl = float(PERPLEXITY.stat(stats.paired([ref["ppl"]]))[0])
        ppl.append(100 * stats.detectable_difference(ref["ppl"], sample["ppl"], PERPLEXITY.stat) / sprint_ppl)
    if not acc:
        return []
    first = next(iter(m.samples.values()))
    docs = sum(len(ids) for ids, _ in first[ACC.key].values())
    windows = sum(len(ids) for ids, _ in first["ppl"].values())
    acc, ppl = np.array(acc), np.array(ppl)
    return [f"What the paired test can detect here (80% power, 5% two-sided, from the spread of SPRINT's "
            f"{len(acc)} pair(s) with the other methods at the same target and seed): a difference in mean {ACC.name} "
            f"of {np.median(acc):.1f} pp (range {acc.min():.1f}–{acc.max():.1f}) on these {docs} documents; smaller "
            f"true differences mostly read as ≈. In perplexity, {np.median(ppl):.1f}% of SPRINT's (range "
            f"{ppl.min():.1f}–{ppl.max():.1f}%) over {windows} windows.", ""]


def _latency_table(m: ModelResults) -> str:
    lat = m.latency or {}
    return (f"t_attn {1000 * lat.get('t_attn_s', math.nan):.2f} ms, t_mlp {1000 * lat.get('t_mlp_s', math.nan):.2f}"
            f" ms (ratio {lat.get('t_mlp_s', math.nan) / lat.get('t_attn_s', math.nan):.2f}) of dense "
            f"{lat.get('dense_s', math.nan):.3f} s at {lat.get('prompt_len', '?')}+{lat.get('gen_len', '?')} tokens")


def _row(m: ModelResults, method: str, point: str, seed: int) -> pd.Series | None:
    rows = m.runs[(m.runs["method"] == method) & (m.runs["point"] == point) & (m.runs["seed"] == seed)]
    return rows.iloc[0] if not rows.empty else None


def _controlled(study: Study, base: ModelResults, other: ModelResults, name: str) -> tuple[list[str], list[str]]:
    ACC = accuracy_measure(base)  # noqa: N806
    """Every method run under ``other``'s setting against itself under the default one, point by point and seed by
    seed (and, at a point with several seeds, the seeds pooled); then SPRINT against each other method within each
    setting (paired).  Returns the section's lines and its lines for the page's short answer: SPRINT against itself
    per point, and per rival measured in both settings whether SPRINT's accuracy against it turns."""
    settings = ((name, other), ("default", base))
    heldout = heldout_corpus(base) and heldout_corpus(other)
    runs = other.runs.assign(first=other.runs["method"] != "sprint").sort_values(["first", "method", "point", "seed"])
    rows, rivals, turns = [], [], []
    selves: dict[str, list[int]] = {}  # point -> the seeds of SPRINT in both settings
    compared: dict[tuple[str, str], list[int]] = {}  # (rival, point) -> the seeds of SPRINT and the rival in both
    for r in runs.itertuples():
        key = (r.method, r.point, r.seed)
        if r.method == "sprint" and key in other.samples and key in base.samples:
            selves.setdefault(r.point, []).append(r.seed)
        for label, row in (("default", _row(base, *key)), (name, r)):
            if row is None:
                continue
            removed = row.removed if isinstance(row.removed, list) else []
            n_attn = sum(kind == "attn" for _, kind in removed)
            delta = {measure: _shown(compare((other, r.method), (base, r.method), r.point, [r.seed], measure), False)
                     if label == name else "" for measure in (ACC, PERPLEXITY, HELDOUT)}
            rows.append({"method": method_name(r.method), "target": point_label(r.point), "seed": r.seed,
                         "setting": label, "removed": f"{n_attn} attn + {len(removed) - n_attn} MLP",
                         "measured speedup (×)": f"{row.measured_speedup:.3f} [{row.measured_speedup_lo:.3f}, "
                                                 f"{row.measured_speedup_hi:.3f}]",
                         **({"inf. acc. (%)": f"{row.informative_accuracy:.2f}", "all-task acc. (%)":
                             f"{row.mean_accuracy:.2f}"} if ACC is INFORMATIVE else
                            {"mean acc. (%)": f"{row.mean_accuracy:.2f}"}),
                         "WikiText-2 ppl": f"{row.wikitext2_ppl:.2f}",
                         f"Δ {'inf. ' if ACC is INFORMATIVE else ''}acc. (pp) vs default [95% CI]": delta[ACC],
                         "Δ ppl vs default [95% CI]": delta[PERPLEXITY],
                         **({"held-out ppl": f"{row.heldout_ppl:.2f}", "Δ held-out ppl vs default [95% CI]":
                             delta[HELDOUT]} if heldout else {})})
        if r.method != "sprint" and ("sprint", r.point, r.seed) in other.samples:
            within = {setting: [compare((m, "sprint"), (m, r.method), r.point, [r.seed], measure)
                                for measure in (ACC, PERPLEXITY, HELDOUT)]
                      for setting, m in settings if key in m.samples}  # setting -> SPRINT − the rival
            rivals.append(f"- SPRINT − {method_name(r.method)} at {point_label(r.point)}, seed {r.seed} (paired, 95% "
                          f"CI; better / worse: for SPRINT, ≈: the CI includes 0): "
                          + "; ".join(f"under `{setting}`: {ACC.name} {_shown(acc)}, perplexity "
                                      f"{_shown(ppl)}" + (f", held-out perplexity {_shown(held)}" if held else "")
                                      for setting, (acc, ppl, held) in within.items()) + ".")
            accuracy = [within[setting][0] for setting, _ in settings if setting in within]
            if len(accuracy) == len(settings) and None not in accuracy:
                compared.setdefault((r.method, r.point), []).append(r.seed)
    for (method, point), seeds in compared.items():
        acc = {setting: compare((m, "sprint"), (m, method), point, seeds, ACC) for setting, m in settings}
        how = f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds pooled"
        if len(seeds) > 1:
            rivals.append(f"- SPRINT − {method_name(method)} at {point_label(point)}, {how}: "
                          + "; ".join(f"under `{setting}`: {ACC.name} {acc[setting].reading}, perplexity "
                                      f"{_shown(compare((m, 'sprint'), (m, method), point, seeds, PERPLEXITY))}"
                                      for setting, m in settings) + ".")
        by_default, changed = AGAINST[acc["default"].verdict], AGAINST[acc[name].verdict]
        turns.append(f"- Under `{name}` ({_variant(study, name)}, one change): SPRINT is {by_default} "
                     f"{method_name(method)} in the default setting and {changed} it under the change "
                     f"({point_label(point)}, {how}; SPRINT − {method_name(method)}: {acc['default'].reading} by "
                     f"default, {acc[name].reading} under the change).")
        rivals.append(f"  So SPRINT is {by_default} {method_name(method)} in the default setting and {changed} it "
                      f"under `{name}` ({point_label(point)}, {how}), each measured at its own setting.")
    itself = []
    for point, seeds in selves.items():
        acc, ppl, held = (compare((other, "sprint"), (base, "sprint"), point, seeds, measure)
                          for measure in (ACC, PERPLEXITY, HELDOUT))
        how = f"seed {seeds[0]}" if len(seeds) == 1 else (
            f"{len(seeds)} seeds pooled; accuracy by seed: "
            + " / ".join(compare((other, "sprint"), (base, "sprint"), point, [seed], ACC).verdict
                         for seed in seeds))
        itself.append(f"at {point_label(point)} ({how}): {ACC.name} {_shown(acc)}, perplexity "
                      f"{_shown(ppl)}" + (f", held-out perplexity {_shown(held)}" if held else ""))
    if itself:
        turns.insert(0, f"- Under `{name}` ({_variant(study, name)}, one change), SPRINT against itself in the default "
                        f"setting (paired, change − default; better / worse / ≈ for the change): {'; '.join(itself)}.")
    lines = [f"## Controlled change: {_variant(study, name)} (`{name}`)", "",
             f"- Latency tables: default {_latency_table(base)}; `{name}` {_latency_table(other)}.", ""]
    if not rows:
        return lines + ["_no cell of this setting done yet_", ""], turns
    return lines + ["Each method under both settings (same documents and windows; Δ: paired bootstrap, this setting "
                    "− the default, same target and seed; each setting's speedup is measured at its own token "
                    "lengths):", "", markdown_table(pd.DataFrame(rows)), "", *turns[:1 if itself else 0],
                    *rivals, ""], turns


def write_page(study: Study) -> Path:
    """Write the study's results page (``output`` + ``.md``) and its full report (``output/report.md`` with its
    figures and CSVs) from the committed cells; returns the page."""
    results = study.output / RESULTS.root
    names = [n for n in study.config["base"]["models"] if metrics_files(results, n)]
    if not names:
        raise SprintError(f"study: no cell done yet under {results}")
    out, report = study.output.with_suffix(".md"), study.output / "report.md"
    main_name = names[0]
    write_report(results, report, dense_of={n: main_name for n in names[1:]}, sweeps=[study.output])
    main = load_results(results, main_name)
    models = {main_name: main, **{n: load_results(results, n, dense_from=main) for n in names[1:]}}
    tests, _ = paired_tests(main)
    verdicts = _verdicts(main, tests)
    cells = study.cells()
    done = [c for c in cells if study.done(c)]
    lat = main.latency or {}
    cfg = study.config
    bench = load_benchmarks(results, list(study.config["base"]["models"]))
    figures = [(what, report_file(Path(report_folder(report)), main_name, f"{stem}.png"))
               for what, stem in (("Accuracy", "accuracy_speedup"), ("Perplexity", "ppl_speedup"))]
    sweeps = [(s, report_file(Path(report_folder(report)), main_name,
                              f"latency_sweep_{s.get('prompt_len', 'x')}+{s.get('gen_len', 'x')}.png"))
              for s in find_sweeps(results, study.output).get(main_name, [])]
    flags = bias_flags(main)
    flagged = flags[flags["flag"] | flags["shifted"]] if not flags.empty else flags
    ev = cfg["evaluate"]
    windows = ("the whole WikiText-2 test split" if ev.get("ppl_max_windows") is None
               else f"{ev['ppl_max_windows']} windows")
    lines = [
        f"# The {study.path.stem} study", "",
        f"Generated by `python -m sprint.study page {os.path.relpath(study.path.resolve(), study.root)}` from the "
        f"{len(done)} of "
        f"{len(cells)} cells done (committed under `{study.output.relative_to(study.root)}/`); the full report, with "
        f"every table and figure, is [{os.path.relpath(report, out.parent)}]({os.path.relpath(report, out.parent)}).",
        "",
        "## Machine, settings and budget", "",
        f"- Machine: {lat.get('device', 'unknown')}; latency protocol: {cfg['latency']['timing']} timing on "
        f"{cfg['latency']['threads']} thread(s), at least {cfg['latency']['rounds']} rounds, 95% CI within "
        f"±{100 * cfg['latency']['max_spread']:.1f}%.",
        f"- Configuration: `{study.config_path.relative_to(study.root)}`: calibration {cfg['calibration']['n']} × "
        f"{cfg['calibration']['seq_len']} tokens of WikiText-2; targets "
        f"{', '.join(f'{t}×' for t in cfg['prune']['target_speedups'])}; SLEB / BlockPruner perplexity on "
        f"{cfg['prune'].get('ppl_windows') or 'all'} calibration window(s) (budget); "
        f"{ev.get('limit') or 'all'} documents per task ({', '.join(ev['tasks'])}), the same for every model; "
        f"perplexity on {windows} in {ev['ppl_seq_len']}-token windows.",
        f"- Job time of the cells done: {bench['wall_s'].sum() / 3600:.2f} h in all" if not bench.empty else
        "- Job time: no benchmark files yet", "",
        markdown_table(bench.round(1)) if not bench.empty else "", "",
        f"## Main comparison (`{main_name}`)", "",
        "Mean ± sample std over seeds (one seed: accuracy ± its stderr, perplexity and speedup [95% CI]); _vs best_: "
        "paired test against the best method at the same target and seed, one mark per seed."
        + (" " + llamacpp_legend(main) if has_llamacpp(main) else ""), "",
        markdown_table(summary_table(main, tests)), "",
        "In words (best by the mean over seeds; SPRINT's paired marks against the best, per seed):", "",
        *([v.sentence for v in verdicts] or ["- _no point with SPRINT and another method evaluated yet_"]), "",
        *_detectable(main),
        *uncertainty_lines(main, results),
        *(f"![{what} vs measured speedup, `{main_name}`]({os.path.relpath(png, out.parent)})\n"
          for what, png in figures if png.is_file()),
        "## Chance levels and informative tasks", "",
        "Chance: a uniform guess; majority (binary tasks): always the most common gold answer; dense: its score with "
        "a 95% CI (bootstrap over the documents). A task is informative when that CI lies above both; the "
        "informative-task accuracy is what the verdicts above use.", "",
        markdown_table(chance_table(main)), "",
        "Answer-bias flags (⚑: a pruned model beats the dense one on a task beyond the paired noise; ↔: on a binary "
        "task its share of an answer moved beyond the paired noise; answer shares in %, dense → pruned):", "",
        *([f"- {'⚑ ' if r.flag else ''}{'↔ ' if r.shifted else ''}{method_name(r.method)} {point_label(r.point)} "
           f"seed {r.seed}, {r.task}: accuracy {r.diff:+.1f} pp [{r.lo:+.1f}, {r.hi:+.1f}] against dense"
           + (f"; {r.shares} (second answer {r.shift:+.1f} pp [{r.shift_lo:+.1f}, {r.shift_hi:+.1f}])"
              if r.shares else "") for r in flagged.itertuples()] or ["- none"]), "",
        *(line for sweep, png in sweeps if png.is_file() for line in (
            f"## Latency against removed sublayers (paper Fig. 3a), {sweep.get('prompt_len')}+{sweep.get('gen_len')} "
            "tokens", "",
            "The check of the linear latency model the stopping rule and SPRINT's η = ζ / t rely on: measured latency "
            "(share of dense, 95% CI) against removed MHA and MLP sublayers, beside the latency profile's and the "
            "latency table's linear predictions.", "",
            f"![Fig. 3a, `{main_name}`]({os.path.relpath(png, out.parent)})", "")),
    ]
    turns = []
    for name in names[1:]:
        more, found = _controlled(study, main, models[name], name)
        lines += more
        turns += found
    at = lines.index("## Machine, settings and budget")
    lines[at:at] = _summary(verdicts, turns, main.informative, list(main.tasks), heldout_corpus(main))
    lines += ["## Cells", "", *(f"- {'done' if study.done(c) else 'to do'}: `{c}`" for c in cells), ""]
    atomic_write_text(out, "\n".join(lines).rstrip() + "\n")
    return out
