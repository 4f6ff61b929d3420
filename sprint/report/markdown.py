"""The report's Markdown (:func:`write_report`): per model, its run sizes and departures from the paper's protocol,
the main table, perplexity, the paired comparisons, the ablation, estimated against measured speedup and the
figures, each table also as a CSV; then the pipeline's stage times."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from sprint.errors import SprintError
from sprint.io import atomic_write_text
from sprint.layout import point_label, report_folder
from sprint.methods import REGISTRY
from sprint.report.figures import (SWEEP_GLOB, plot_latency_sweep, plot_metric_speedup, plot_pattern,
                                   plot_speedup_estimate, plot_time_accuracy)
from sprint.report.load import (INFORMATIVE_COL, TREE, ModelResults, _load_json, load_benchmarks, load_results,
                                model_names, model_of, served_models)
from sprint.report.uncertainty import uncertainty_lines
from sprint.report.names import (at_setting, method_name, order_methods, order_points, point_header, sort_rows,
                                 target_label)
from sprint.report.tables import (ALL_TASKS_LABEL, INFORMATIVE_LABEL, MARKS, N_BOOT, aggregate, bias_flags,
                                  chance_table, display_table, has_llamacpp, heldout_corpus, heldout_spec,
                                  llamacpp_legend, llamacpp_spec, paired_tests, retained_table, seed_marks, speedup_table, spread_text, with_ci)

ABLATION = ("sprint-l", "sprint-t", "sprint-e", "sprint")
PAPER = {"calibration": "128×2048", "prompt_len": 1024, "gen_len": 512, "ppl_seq_len": 2048}
VS_BEST = ("_vs best_: the paired test of *Paired comparisons with the best method* below (≈ best: "
           "indistinguishable from the best at the same target or weight setting), one mark per seed in seed order.")


def markdown_table(df: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency)."""
    rows = [list(map(str, df.columns)), ["---"] * df.shape[1], *df.astype(str).values.tolist()]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


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
    points = order_points(m.runs["point"])
    targets, settings = [p for p in points if p.startswith("x")], [p for p in points if not p.startswith("x")]
    return [
        f"## {m.name}", "",
        f"- Calibration (pruning): {_unique(pruned['calibration'])} (sequences × tokens)",
        f"- Evaluation: limit per task = {_unique(evaluated['eval_limit'])}; tasks: "
        + (", ".join(f"{t} ({k})" for t, k in m.tasks.items()) or "none"),
        f"- Latency: {latency}",
        f"- SPRINT hyper-parameters: {_unique(sprint['hparams'])}",
        f"- Methods: {', '.join(map(method_name, order_methods(m.runs['method']))) or 'none'}; "
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
                   + " (paper: whole generate calls; see docs/latency-protocol.md)")
    seq = _unique(pd.concat([m.dense, m.runs])["ppl_seq_len"].dropna().astype(int))
    if seq not in ("unknown", str(PAPER["ppl_seq_len"])):
        out.append(f"perplexity on {seq}-token windows (paper: {PAPER['ppl_seq_len']})")
    return ["- Departures from the paper's protocol (budget): " + "; ".join(out)] if out else []


def _settings_note(m: ModelResults) -> list[str]:
    """What the rows of one-shot methods (Wanda, SparseGPT, SliceGPT, LLM-Pruner) are, when there are any."""
    methods = [meth for meth in order_methods(m.runs["method"]) if at_setting(meth)]
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
        windows, methods = few["ppl_windows"].astype(int), order_methods(few["method"])
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
            f"CSV: [{csv.name}]({csv.parent.name}/{csv.name})", ""]


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
              f"mean accuracy over the informative tasks, over all tasks (the paper's figure), and by "
              f"perplexity), on the documents every method answered ({_docs(m)} per task; resampled within each "
              f"task) and the same {windows} WikiText-2 windows of {_unique(runs['ppl_seq_len'].dropna().astype(int))}"
              f" tokens; paired bootstrap, {N_BOOT} resamples, 95% CI of the difference. **≈ best**: the CI includes "
              "0, indistinguishable from the best; **worse**: the CI excludes 0.")
    shown = pd.DataFrame({
        point_header(tests["point"]): tests["point"].map(point_label), "seed": tests["seed"],
        "method": tests["method"].map(method_name),
        "inf. acc. (%)": [with_ci(v, math.nan, math.nan, "{:.2f}") for v in tests["acc_inf"]],
        "Δ inf. acc. (pp) [95% CI]": [with_ci(*r, fmt="{:+.2f}")
                                      for r in tests[["acc_inf_diff", "acc_inf_lo", "acc_inf_hi"]].to_numpy()],
        "inf. acc. vs best": tests["acc_inf_mark"].map(MARKS).fillna(""),
        "all-task acc. (%)": [with_ci(v, math.nan, math.nan, "{:.2f}") for v in tests["acc"]],
        "Δ acc. (pp) [95% CI]": [with_ci(*r, fmt="{:+.2f}") for r in tests[["acc_diff", "acc_lo", "acc_hi"]].to_numpy()],
        "acc. vs best": tests["acc_mark"].map(MARKS).fillna(""),
        "ppl": [with_ci(v, math.nan, math.nan, "{:.2f}") for v in tests["ppl"]],
        "Δ ppl [95% CI]": [with_ci(*r, fmt="{:+.2f}") for r in tests[["ppl_diff", "ppl_lo", "ppl_hi"]].to_numpy()],
        "ppl vs best": tests["ppl_mark"].map(MARKS).fillna(""),
        "held-out ppl": [with_ci(v, math.nan, math.nan, "{:.2f}") for v in tests["heldout"]],
        "Δ held-out ppl [95% CI]": [with_ci(*r, fmt="{:+.2f}")
                                    for r in tests[["heldout_diff", "heldout_lo", "heldout_hi"]].to_numpy()],
        "held-out ppl vs best": tests["heldout_mark"].map(MARKS).fillna("")})
    if tests["heldout"].isna().all():  # no held-out corpus scored
        shown = shown.drop(columns=[c for c in shown if "held-out" in c])
    else:
        legend += (f" Held-out perplexity: on {heldout_corpus(m)} (never calibrated on), the same windowing, paired "
                   "over the same windows.")
    if tests["acc_inf"].isna().all():  # the informative tasks unknown: no such columns
        shown = shown.drop(columns=[c for c in shown if c.startswith(("inf. acc.", "Δ inf. acc."))])
    skipped_note = "".join(f"; skipped: {n}" for n in skipped)
    lines = _section("Paired comparisons with the best method", shown, tests, csv, out, legend + skipped_note,
                     "_no comparison: fewer than two methods with per-document results at any target_" + skipped_note)
    return lines, tests


def _speedup_shown(speed: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "method": speed["method"].map(method_name), "target": speed["point"].map(point_label), "seed": speed["seed"],
        "estimated (×)": speed["estimated_speedup"].map("{:.3f}".format),
        "measured (×) [95% CI]": [with_ci(*r) for r in speed[["measured_speedup", "measured_speedup_lo",
                                                           "measured_speedup_hi"]].to_numpy()],
        "spread": speed["speedup_spread"].map(spread_text),
        "rel. error (%)": speed["rel_error_pct"].map("{:.2f}".format)})


def report_file(folder: Path, model: str, name: str) -> Path:
    """A table or figure of ``model`` in the report's folder: ``{model}_{name}``."""
    return folder / f"{model}_{name}"


def _chance_section(m: ModelResults, chance_csv: Path, retained_csv: Path, bias_csv: Path,
                    out: list[Path]) -> list[str]:
    """Chance levels, informative tasks, retained accuracy above chance and the answer-bias flags."""
    if m.chance.empty:
        return []
    whose = f" (the dense evaluation of `{m.dense_from}`: the same weights on the same documents)" if m.dense_from else ""
    inf = m.informative
    verdict = ("_Informative tasks_: unknown (no dense evaluation or no chance levels recorded): the verdicts fall "
               "back on nothing: the informative-task accuracy is not computed." if inf is None else
               f"_Informative tasks_: {', '.join(inf) or 'none'} of {len(m.tasks)}. "
               "The informative-task accuracy (their plain mean) is what verdicts (best / ≈ / worse) are written "
               "from; the all-task mean stays beside it as the paper's figure.")
    lines = _section("Chance-aware accuracy", chance_table(m), m.chance, chance_csv, out,
                     "Chance: the accuracy of a uniform guess (1 / choices, averaged over the evaluated documents); "
                     "majority (binary tasks): the accuracy of always giving the most common gold answer; dense: its "
                     "score with a 95% CI (percentile bootstrap over the task's documents)" + whose + ". A task is "
                     "*informative* when that CI lies above both chance and majority.")
    lines[-2:-2] = [verdict, ""]
    flags = bias_flags(m)
    shown = retained_table(m, flags)
    if not shown.empty:
        lines += _section("Retained accuracy above chance", shown, shown, retained_csv, out,
                          "Per task: accuracy (%, mean over seeds) and in brackets the share retained above chance, "
                          "(acc − chance) / (dense − chance) (– where dense is not above chance). ⚑: answer-bias "
                          "flag, a seed's model beats the dense model on the task beyond the paired test's noise "
                          "(the paired-bootstrap 95% CI of pruned − dense lies above 0).")
    flagged = flags[flags["flag"] | flags["shifted"]] if not flags.empty else flags
    bias = ["#### Answer-bias flags", "",
            "⚑: the pruned model beats the dense one on the task beyond the paired noise (pruned − dense accuracy, "
            "paired-bootstrap 95% CI above 0): a gain from pruning, read as a shifted answer bias rather than "
            "retained skill. ↔ (binary tasks): its share of an answer moved beyond the paired noise (the CI of "
            "pruned − dense share of the second answer excludes 0), whatever the accuracy did.", ""]
    bias += [f"- {'⚑ ' if r.flag else ''}{'↔ ' if r.shifted else ''}{method_name(r.method)} {point_label(r.point)} "
             f"seed {r.seed} on {r.task}: accuracy {r.diff:+.1f} pp [{r.lo:+.1f}, {r.hi:+.1f}] against the dense "
             "model" + (f"; answer shares (%) dense → pruned: {r.shares}, second answer {r.shift:+.1f} pp "
                        f"[{r.shift_lo:+.1f}, {r.shift_hi:+.1f}]" if r.shares else "") + "."
             for r in flagged.itertuples()] or [
        "- none: no pruned model beats the dense one, or shifts its answers, on any task beyond the paired noise."]
    binary = sorted({t for shares in m.answers.values() for t in shares})
    if binary:
        rows = [{"model": "Dense" if k[0] == "dense" else f"{method_name(k[0])} {point_label(k[1])} seed {k[2]}",
                 **{t: " / ".join(f"{a} {v:.0f}" for a, v in m.answers[k].get(t, {}).items()) for t in binary}}
                for k in sort_rows(pd.DataFrame(list(m.answers), columns=["method", "point", "seed"])).itertuples(
                    index=False, name=None)]
        bias += ["", "Each model's share (%) of each answer on the binary tasks:", "", markdown_table(pd.DataFrame(rows))]
    if not flags.empty:
        out.append(atomic_write_text(bias_csv, flags.round(6).to_csv(index=False)))
        bias += ["", f"CSV: [{bias_csv.name}]({bias_csv.parent.name}/{bias_csv.name})"]
    return lines + bias + [""]


def _sweep_notes(sweep: dict[str, Any]) -> list[str]:
    """The linearity summary of a latency sweep, one line per kind."""
    out = []
    for kind, lin in (sweep.get("linearity") or {}).items():
        name = "MHA" if kind == "attn" else "MLP"
        parts = [f"{which}'s line off by at most {100 * lin[which]['max_abs_gap']:.1f} pp of the dense latency, "
                 f"inside the 95% CI at {sum(lin[which]['inside_ci'])} of {len(lin[which]['inside_ci'])} points"
                 for which in ("profile", "table") if which in lin]
        out.append(f"- {name}: measured share per removed sublayer {100 * lin['fitted_share_per_sublayer']:.2f}% "
                   f"(least squares through 1 at 0); " + "; ".join(parts) + ".")
    return out + [""] if out else []


def find_sweeps(*folders: Path) -> dict[str, list[dict[str, Any]]]:
    """Latency sweeps (``latency_sweep*.json`` directly in a folder or in a model's folder of it) by model: the last
    component of the sweep's ``model`` path."""
    found: dict[str, list[dict[str, Any]]] = {}
    for folder in folders:
        for path in sorted({*folder.glob(SWEEP_GLOB), *folder.glob(f"*/{SWEEP_GLOB}")}):
            sweep = _load_json(path)
            if not isinstance(sweep.get("points"), list):
                raise SprintError(f"{path}: not a latency sweep (no points)")
            found.setdefault(Path(str(sweep.get("model", ""))).name, []).append(sweep)
    return found


def _model_report(m: ModelResults, folder: Path, out: list[Path],
                  sweeps: list[dict[str, Any]] = (), results: Path | None = None) -> list[str]:
    """Tables and figures of one model (files appended to ``out``; ``sweeps``: its latency sweeps, Fig. 3a;
    ``results``: its results folder, where an analysis of the latency table may lie) -> its Markdown lines."""
    def path(name: str) -> Path:
        return report_file(folder, m.name, name)

    paired, tests = _paired_section(m, path("paired.csv"), out)
    prune_budget, eval_budget = _budget_notes(m)
    acc, time = ("mean acc. (%)", "mean_accuracy", "{:.2f}"), ("pruning time (s)", "pruning_time_s", "{:.1f}")
    ppl = ("WikiText-2 ppl", "wikitext2_ppl", "{:.2f}")
    spec = [("measured speedup (×)", "measured_speedup", "{:.3f}"), *llamacpp_spec(m),
            ("estimated speedup (×)", "estimated_speedup", "{:.3f}"),
            *((f"{t} (%)", f"task:{t}", "{:.2f}") for t in m.tasks), (INFORMATIVE_LABEL, INFORMATIVE_COL, "{:.2f}"),
            (ALL_TASKS_LABEL, "mean_accuracy", "{:.2f}"), ppl, time]
    main = aggregate(pd.concat([m.dense, m.runs]), [c for _, c, _ in spec + heldout_spec(m)]
                     + ["speedup_spread", "ppl_tokens"])
    main_shown = display_table(main, spec)
    main_shown.insert(4, "speedup spread", main["speedup_spread_mean"].map(spread_text))
    main_shown["inf. acc. vs best"] = seed_marks(tests, main, "acc_inf")
    main_shown["all-task acc. vs best"] = seed_marks(tests, main, "acc")
    if m.informative is None:  # unknown: the all-task mean alone
        main_shown = main_shown.drop(columns=[INFORMATIVE_LABEL, "inf. acc. vs best"])
    perplexity = display_table(main, [ppl])
    perplexity["ppl vs best"] = seed_marks(tests, main, "ppl")
    for label, col, fmt in heldout_spec(m):
        perplexity[label] = display_table(main, [(label, col, fmt)])[label]
        perplexity["held-out ppl vs best"] = seed_marks(tests, main, "heldout")
    perplexity["tokens"] = main["ppl_tokens_mean"].map(lambda v: "–" if math.isnan(v) else f"{v:.0f}")
    abl_spec = [acc, time, ("tunings", "num_tunings", "{:.1f}"), ("peak RSS (MB)", "peak_rss_mb", "{:.0f}")]
    ablation = sort_rows(aggregate(m.runs[m.runs["method"].isin(ABLATION)], [c for _, c, _ in abl_spec]),
                     ("point", "method"))
    speed = speedup_table(m.runs)
    tokens = _unique(pd.concat([m.dense, m.runs])["ppl_tokens"].dropna().astype(int))
    mark = "acc_inf_mark" if tests["acc_inf_mark"].notna().any() else "acc_mark"
    compared = tests.dropna(subset=[mark])
    inseparable = not compared.empty and not (compared[mark] == "worse").any()
    main_lines = _section("Main results", main_shown, main, path("main.csv"), out,
                          "Measured speedup: the per-round ratio of dense to pruned generation time over interleaved "
                          "rounds, its Hodges-Lehmann estimate (the median with `estimator: median`) [95% CI]; spread: the "
                          "CI's relative half-width (mean over seeds). Dense is timed against a second copy of "
                          "itself (≈ 1 up to noise). " + (llamacpp_legend(m) + " " if has_llamacpp(m) else "")
                          + VS_BEST) + _settings_note(m) + prune_budget + eval_budget
    ppl_cols = ["method", "point", "seeds",
                *(c for c in main if c.startswith(("wikitext2_ppl", "ppl_tokens", "heldout_ppl")))]
    heldout = heldout_corpus(m)
    ppl_lines = _section("Perplexity", perplexity, main[ppl_cols],
                         path("perplexity.csv"), out,
                         f"WikiText-2 test perplexity on {tokens} tokens per model (one seed: [95% CI], bootstrap "
                         "over windows). " + (f"Held-out perplexity: {heldout}, another domain never used for "
                                              "calibration, over as many windows of the same length; SPRINT's least "
                                              "squares fit the calibration corpus (WikiText-2), so a lead that holds "
                                              "here is not that fitting. " if heldout else "") + VS_BEST)
    lines = _header(m) + _chance_section(m, path("chance.csv"), path("retained.csv"), path("bias.csv"), out)
    lines += uncertainty_lines(m, results) if results is not None else []
    if inseparable:
        lines += ["### Headline: perplexity", "",
                  f"**Accuracy at this evaluation size ({_docs(m)} documents per task) cannot separate the methods**: at "
                  "every target the paired 95% CI of every method's difference from the best mean accuracy "
                  "includes 0. Perplexity is therefore the headline; the accuracy table follows.", ""]
        lines += ppl_lines + main_lines
    else:
        lines += main_lines + ppl_lines
    lines += paired
    lines += _section("Ablation (paper Table 1)", display_table(ablation, abl_spec), ablation, path("ablation.csv"), out,
                      "SPRINT-l: no latency-aware importance; SPRINT-t: no tunability-aware sensitivity; "
                      "SPRINT-e: no activation checkpointing / fast candidate selection.")
    dense = m.dense.dropna(subset=["measured_speedup"])
    check = "" if dense.empty else (
        " Dense against a second copy of itself (a check of the protocol, ≈ 1): "
        + with_ci(*dense[["measured_speedup", "measured_speedup_lo", "measured_speedup_hi"]].iloc[0])
        + f" (spread {spread_text(dense['speedup_spread'].iloc[0])}).")
    lines += _section("Estimated vs measured speedup", _speedup_shown(speed), speed, path("speedup.csv"), out,
                      "Relative error |est − meas| / meas per pruned model; "
                      f"mean {speed['rel_error_pct'].mean():.2f}%." + check)
    figures = [("Perplexity vs measured speedup", plot_metric_speedup(m, path("ppl_speedup.png"), "wikitext2_ppl"), []),
               ("Accuracy vs measured speedup (paper Fig. 5)", plot_metric_speedup(m, path("accuracy_speedup.png")),
                eval_budget),
               ("Pruning time vs accuracy (paper Fig. 6)", plot_time_accuracy(m, path("time_accuracy.png")),
                prune_budget + eval_budget),
               *((f"Pruning pattern at {target_label(t)} (paper Fig. 7)", plot_pattern(m, t, path(f"pattern_x{t:g}.png")), [])
                 for t in sorted(m.runs["target"].dropna().unique())),
               ("Estimated vs measured speedup", plot_speedup_estimate(m, path("speedup_estimate.png")), []),
               *((f"Latency vs removed sublayers, {s.get('prompt_len', '?')}+{s.get('gen_len', '?')} tokens "
                  "(paper Fig. 3a)", plot_latency_sweep(s, path(f"latency_sweep_{s.get('prompt_len', 'x')}+"
                                                                f"{s.get('gen_len', 'x')}.png")), _sweep_notes(s))
                 for s in sweeps)]
    lines += ["### Figures", ""]
    for caption, png, notes in figures:
        if png is not None:
            out.append(png)
            lines += [f"![{caption}]({png.parent.name}/{png.name})", "", *notes]
    return lines


def write_report(results: Path, output: Path, metrics: list[Path] | None = None,
                 dense_of: dict[str, str] | None = None, sweeps: list[Path] = (),
                 llamacpp: list[Path] | None = None) -> list[Path]:
    """Write ``output`` (Markdown) plus its CSVs and PNGs in its :func:`~sprint.layout.report_folder`; return every
    file written.

    ``metrics``: the metrics files to report (the pipeline passes those its DAG made); by default every model of
    ``results`` (:func:`~sprint.report.load.model_names`) with every metrics file of it.  ``dense_of``: model ->
    the model whose dense evaluation decides its chance-aware reading when it has none (the same weights).  A latency
    sweep (``latency_sweep*.json``, paper Fig. 3a) in ``results``, a model's folder of it or the folders ``sweeps``
    is drawn in its model's section.  ``llamacpp``: the llama.cpp speedup files (``{model}/llamacpp.json`` of the
    export stage) whose models get a "llama.cpp speedup" column; by default every one in ``results``, or none with
    ``metrics`` (the pipeline lists those it made)."""
    results, output = Path(results), Path(output)
    if not results.is_dir():
        raise SprintError(f"{results}: results folder not found")
    folder = Path(report_folder(output))
    chosen: dict[str, list[Path]] | None = None
    if metrics is not None:
        for path in map(Path, metrics):
            if not path.is_file():
                raise SprintError(f"{path}: metrics file not found")
        chosen = {}
        for path in map(Path, metrics):
            chosen.setdefault(model_of(results, path), []).append(path)
    models = model_names(results) if chosen is None else sorted(chosen)
    served = served_models(results, llamacpp)  # the models whose llamacpp.json to read (None: where it exists)
    where = os.path.relpath(results, output.parent)  # the same bytes wherever the two lie, side by side
    lines = ["# SPRINT report", "", f"Results folder: `{where}` (relative to this report).", ""]
    if not models:
        lines += [f"No model results found (expected `{where}/<model>/` with latency.json, metrics/ or pruned/).", ""]
    written: list[Path] = []
    found = find_sweeps(results, *map(Path, sweeps))
    loaded: dict[str, ModelResults] = {}
    for model in sorted(models, key=lambda n: (dense_of or {}).get(n) is not None):  # lenders first
        lender = loaded.get((dense_of or {}).get(model, ""))
        loaded[model] = load_results(results, model, None if chosen is None else chosen[model], lender,
                                     None if served is None else model in served)
    for model in models:
        lines += _model_report(loaded[model], folder, written, found.get(model, []), results)
    bench = load_benchmarks(results, models)
    lines += _section("Pipeline stages (Snakemake benchmarks)", bench.round(1), bench, folder / "benchmarks.csv",
                      written, "Per rule (and model): number of jobs, summed wall and CPU seconds, max RSS (MB)."
                      + (f" Total wall time: {bench['wall_s'].sum():.1f} s." if not bench.empty else ""),
                      f"_missing: no benchmark TSVs under `{os.path.join(where, TREE.benchmarks())}`_")
    written.append(atomic_write_text(output, "\n".join(lines).rstrip() + "\n"))
    return written
