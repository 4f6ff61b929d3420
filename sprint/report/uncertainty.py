"""What SPRINT's removals rest on (issue 25, item 6): the latency table's own uncertainty against the ratio at which
each of SPRINT's picks would have changed type.

SPRINT compares an attention and an MLP sublayer through η = ζ / t, so its pick between the best of each flips when
t_mlp / t_attn crosses ζ_mlp / ζ_attn, the *flip ratio* every removal records (``sprint.methods.sprint``).  The
table's uncertainty is the 95% interval of t_mlp / t_attn over bootstrap draws of the profile's recorded rounds
(:func:`sprint.measure.draws.ratio_interval`).  A pick whose flip ratio lies inside that interval is one a re-profile
of the same machine could change.  Where ``sprint analyze latency-draws`` was run into the model's results folder
(``{results}/{model}/analysis/latency-draws.json``), the share of draws in which SPRINT's perplexity beats the best
other method's is added.  No torch."""

from __future__ import annotations

import json
from pathlib import Path

from sprint.errors import SprintError
from sprint.measure.draws import ratio_interval
from sprint.measure.table import LatencyTable
from sprint.report.load import ModelResults

DRAWS_FILE = "analysis/latency-draws.json"  # inside a model's results folder


def latency_table(record: dict) -> LatencyTable:
    """A latency JSON (as read by the report) as a :class:`LatencyTable`."""
    fields = ("device", "model", "prompt_len", "gen_len", "dense_s", "t_attn_s", "t_mlp_s")
    return LatencyTable(*(record.get(k, d) for k, d in zip(fields, ("unknown", "unknown", 0, 0, 0.0, 0.0, 0.0))),
                        extra={k: v for k, v in record.items() if k not in fields})


def flip_summary(m: ModelResults) -> dict | None:
    """The table's ratio and its 95% interval, and per SPRINT run (seed, at its largest target) the flip ratios of
    its removals and how many lie inside the interval; None without a profiled table or a SPRINT run that recorded
    flip ratios."""
    if not m.latency or "flip_ratios" not in m.runs:
        return None
    table = latency_table(m.latency)
    try:
        lo, hi = ratio_interval(table)
    except SprintError:
        return None  # hand-written, or profiled before the rounds were kept
    runs = m.runs[(m.runs["method"] == "sprint") & m.runs["num_layers"].notna()]
    per_seed = {}
    for seed, group in runs.groupby("seed"):
        last = max((r for _, r in group.iterrows()), key=lambda r: len(r["removed"]))  # the largest target's
        flips = [f for f in (last["flip_ratios"] if isinstance(last["flip_ratios"], list) else []) if f is not None]
        if flips:
            per_seed[int(seed)] = {"flips": flips, "inside": [f for f in flips if lo < f < hi],
                                   "removals": len(last["removed"]), "tie_break": last.get("tie_break", "none")}
    if not per_seed:
        return None
    return {"ratio": table.t_mlp_s / table.t_attn_s, "interval": (lo, hi), "seeds": per_seed}


def draws_summary(results: Path, model: str) -> dict | None:
    """The ``sprint analyze latency-draws`` summary of ``model`` if it was written into its results folder."""
    path = Path(results) / model / DRAWS_FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        s = d["summary"]
        return {"k": int(s["draws"]), "beats": int(s["sprint_beats_best_other"]),
                "better": int(s["sprint_separated_better"]), "worse": int(s["sprint_separated_worse"]),
                "target": float(d["target"]), "path": str(path)}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SprintError(f"{path}: malformed latency-draws analysis ({type(e).__name__}: {e})") from e


def uncertainty_lines(m: ModelResults, results: Path) -> list[str]:
    """The report's paragraph on what SPRINT's removals rest on ([] when there is nothing to say)."""
    flips, draws = flip_summary(m), draws_summary(results, m.name)
    if flips is None and draws is None:
        return []
    lines = ["### What SPRINT's removals rest on: the latency table's uncertainty", ""]
    if flips:
        lo, hi = flips["interval"]
        per = "; ".join(f"seed {seed}: {len(s['inside'])} of {len(s['flips'])}"
                        + (f" (at {', '.join(f'{f:.2f}' for f in s['inside'])})" if s["inside"] else "")
                        + (" [tie_break=sensitivity]" if s["tie_break"] == "sensitivity" else "")
                        for seed, s in flips["seeds"].items())
        unstable = any(s["inside"] for s in flips["seeds"].values())
        lines.append(
            f"- SPRINT weighs an attention against an MLP sublayer by the table's t_mlp/t_attn = {flips['ratio']:.2f}; "
            f"its 95% interval over the profile's own recorded rounds is [{lo:.2f}, {hi:.2f}]. Picks between the two "
            f"types that would flip inside that interval: {per}. "
            + ("**A re-profile of this machine could change SPRINT's removals, and with them its verdict**; "
               "`sprint analyze latency-draws` measures how often (docs/analysis.md)." if unstable else
               "No pick flips inside it: SPRINT's removals do not depend on the table's noise."))
    if draws:
        lines.append(
            f"- Under {draws['k']} latency tables drawn from the same rounds (`sprint analyze latency-draws`, "
            f"{draws['target']:g}x), SPRINT's perplexity beat the best other method's in {draws['beats']} of "
            f"{draws['k']} draws ({draws['better']} separated by the paired CI, {draws['worse']} separated worse).")
    return lines + [""]
