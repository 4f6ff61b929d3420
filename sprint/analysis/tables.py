"""The Markdown tables of the analyses, from the JSON they write (no torch): the K-draw table of
:mod:`sprint.analysis.latency_noise` and the Spearman tables of :mod:`sprint.analysis.sensitivity`."""

from __future__ import annotations


def latency_draws_markdown(result: dict) -> str:
    """The K-draw tables of a result: per draw, and per method over the draws."""
    names = result["methods"]
    lines = [f"Latency draws: {result['summary']['draws']} bootstrap tables of {result['table']['rounds']} recorded "
             f"rounds ({result['table']['path']}), target {result['target']:g}x, perplexity on "
             f"{result['evaluation']['windows']} x {result['evaluation']['seq_len']} WikiText-2 test windows, "
             f"calibration {result['calibration']['n']} x {result['calibration']['seq_len']}.", ""]
    head = "| draw | t_attn ms | t_mlp ms | t_mlp/t_attn | " + " | ".join(
        f"{n} removed (a+m) | {n} ppl" for n in names) + (" | SPRINT rank | SPRINT − best other |" if "sprint" in names
                                                           else " |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for d in result["draws"]:
        cells = [str(d["index"]), f"{1000 * d['t_attn_s']:.2f}", f"{1000 * d['t_mlp_s']:.2f}",
                 f"{d['mlp_over_attn']:.2f}"]
        for n in names:
            e = d["methods"][n]
            cells += [f"{e['n_attn']}+{e['n_mlp']}", f"{e['ppl']:.1f}"]
        if "sprint" in names and "sprint_rank" in d:
            v = d["sprint_vs_best_other"]
            cells += [f"{d['sprint_rank']} of {len(names)}",
                      f"{v['diff']:+.1f} [{v['lo']:+.1f}, {v['hi']:+.1f}] vs {v['method']}"]
        lines.append("| " + " | ".join(cells) + " |")
    s = result["summary"]
    if not s["draws"]:
        return "\n".join(lines) + "\n"
    lines += ["", "| method | attn removed (min/median/max) | MLP removed (min/median/max) | distinct sets | "
              "ppl min | p10 | median | p90 | max |", "|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        m = s["methods"][n]
        lines.append(f"| {n} | {m['n_attn']['min']}/{m['n_attn']['median']:g}/{m['n_attn']['max']} | "
                     f"{m['n_mlp']['min']}/{m['n_mlp']['median']:g}/{m['n_mlp']['max']} | "
                     f"{m['distinct_removal_sets']} | " + " | ".join(
                         f"{m['ppl'][q]:.1f}" for q in ("min", "p10", "median", "p90", "max")) + " |")
    if "sprint_rank" in s:
        lines += ["", f"SPRINT's rank over the {s['draws']} draws: " + ", ".join(
            f"{r}: {c}" for r, c in s["sprint_rank"].items()) +
            f"; lower perplexity than the best other method in {s['sprint_beats_best_other']} of {s['draws']} "
            f"(separated, paired 95% CI: better in {s['sprint_separated_better']}, worse in "
            f"{s['sprint_separated_worse']})."]
        freq = s["methods"]["sprint"]["removal_frequency"]
        lines += ["", "SPRINT's removals, draws out of " + str(s["draws"]) + ": " + ", ".join(
            f"{key} {c}" for key, c in freq.items())]
    return "\n".join(lines) + "\n"


def sensitivity_markdown(result: dict) -> str:
    """Spearman table per step (ρ [95% CI]) and the type gap."""
    lines = []
    for st in result["steps"]:
        c = st["correlations"]
        lines += [f"Step {st['step']} ({len(st['candidates'])} candidates; {len(st['removed_before'])} removed before; "
                  f"SPRINT removes {st['sprint_choice'][1]} {st['sprint_choice'][0]}):", "",
                  "| Spearman ρ [95% CI] | all | attention | MLP |", "|---|---|---|---|"]
        keys = [k for k in c["all"] if k != "n"]
        for key in keys:
            cells = []
            for scope in ("all", "attn", "mlp"):
                e = c[scope][key]
                cells.append(f"{e['rho']:+.2f} [{e['ci95'][0]:+.2f}, {e['ci95'][1]:+.2f}]")
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        lines.append("")
        for dmg, gap in c["type_gap"].items():
            lines.append(f"Type gap on {dmg} damage: at equal ζ an MLP does {gap['zeta']['mlp_over_attn']:.2f}x the "
                         f"damage of an attention sublayer (at equal ζ̃: {gap['zeta_tilde']['mlp_over_attn']:.2f}x; "
                         f"{gap['zeta']['n']} candidates with positive damage).")
        lines.append("")
    return "\n".join(lines)


def tuning_strength_markdown(result: dict) -> str:
    """Per setting: removals, tunings, pruning time, and both perplexities with their differences from the default."""
    held = result["heldout"]
    lines = [f"Tuning strength: SPRINT to {result['target']:g}x under {result['table']['path']}, perplexity on "
             f"{result['evaluation']['windows']} x {result['evaluation']['seq_len']}-token windows of WikiText-2 test "
             f"(in-domain) and of {held} (held out); Δ: setting − default, paired over the same windows, 95% CI.", "",
             f"| setting | calibration | removed (attn + MLP) | tunings | pruning s | WikiText-2 ppl [95% CI] | Δ vs "
             f"default | {held} ppl [95% CI] | Δ vs default |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in result["settings"].items():
        cells = [name, f"{row['calibration']['n']} x {row['calibration']['seq_len']}",
                 f"{row['n_attn']} + {row['n_mlp']}", str(row["tunings"]), f"{row['seconds']:.0f}"]
        for corpus in ("wikitext2", held):
            p, d = row["ppl"][corpus], (row.get("vs_default") or {}).get(corpus)
            cells.append(f"{p['ppl']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]")
            cells.append("–" if name == "default" or d is None else
                         f"{d['diff']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
