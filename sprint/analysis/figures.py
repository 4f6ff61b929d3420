"""PNGs of the analyses, drawn with matplotlib from the JSON they write (no torch): the latency draws (removal
frequency and perplexity per draw), ζ̃ / ζ against the damage (scatter coloured by sublayer type), and the paper's
Fig. 3b (candidates' ranks before and after tuning); :func:`write_outputs` writes them with the Markdown tables."""

from __future__ import annotations

from pathlib import Path

COLORS = {"attn": "tab:blue", "mlp": "tab:orange"}
LABELS = {"attn": "attention", "mlp": "MLP"}
METHOD_LABELS = {"sprint": "SPRINT", "shortgpt": "ShortGPT", "sleb": "SLEB", "blockpruner": "BlockPruner"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path, dpi: int) -> Path:
    """Lay out, write the PNG (its folder made) and close the figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def latency_draws_figure(result: dict, path: str | Path) -> Path:
    """Left: how often SPRINT removes each sublayer over the draws (attention above, MLP below, by layer).
    Right: each method's perplexity per draw, draws sorted by t_mlp / t_attn."""
    plt = _plt()
    rows = [d for d in result["draws"] if d["index"] != "point"]
    layers = 1 + max((layer for d in result["draws"] for e in d["methods"].values() for layer, _ in e["removed"]),
                     default=0)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
    names = result["methods"]
    if "sprint" in names:
        for kind, sign in (("attn", 1), ("mlp", -1)):
            counts = [sum([layer, kind] in d["methods"]["sprint"]["removed"] for d in rows) for layer in range(layers)]
            ax1.bar(range(layers), [sign * c for c in counts], color=COLORS[kind], label=LABELS[kind])
        ax1.axhline(0, color="black", lw=0.5)
        ax1.set_xlabel("decoder layer")
        ax1.set_ylabel(f"draws removing it (of {len(rows)}); attention up, MLP down")
        ax1.set_title("SPRINT's removals under the drawn latency tables")
        ax1.legend(loc="lower left", fontsize=8)
    order = sorted(rows, key=lambda d: d["mlp_over_attn"])
    x = [d["mlp_over_attn"] for d in order]
    for name in names:
        ax2.plot(x, [d["methods"][name]["ppl"] for d in order], "o-" if name == "sprint" else ".--",
                 label=METHOD_LABELS.get(name, name), lw=1.5 if name == "sprint" else 0.8)
    point = next((d for d in result["draws"] if d["index"] == "point"), None)
    if point is not None:
        ax2.axvline(point["mlp_over_attn"], color="grey", lw=0.6, ls=":", label="recorded table")
    ax2.set_xlabel("t_mlp / t_attn of the draw")
    ax2.set_ylabel(f"WikiText-2 perplexity ({result['evaluation']['windows']} windows)")
    ax2.set_title(f"Perplexity at {result['target']:g}x per draw")
    ax2.legend(fontsize=8)
    return _save(plt, fig, path, dpi=130)


def scatter_figure(result: dict, path: str | Path) -> Path:
    """Per probed step (rows) and per damage (columns: calibration, WikiText-2): ζ̃ and ζ against the damage
    (log x, symlog y: some removals lower the NLL), coloured by sublayer type; SPRINT's choice ringed."""
    plt = _plt()
    from matplotlib.ticker import NullFormatter

    steps = result["steps"]
    damages = [g for g in steps[0]["candidates"][0]["damage"] if " " not in g]
    fig, axes = plt.subplots(len(steps), 2 * len(damages), figsize=(4.2 * 2 * len(damages), 3.6 * len(steps)),
                             squeeze=False)
    for row, st in zip(axes, steps):
        cands = st["candidates"]
        choice = next(c for c in cands if [c["layer"], c["kind"]] == st["sprint_choice"])
        for col, (dmg, key, sym) in enumerate((d, k, s) for d in damages
                                              for k, s in (("pseudo", "ζ̃"), ("sensitivity", "ζ"))):
            ax = row[col]
            for kind in ("attn", "mlp"):
                sub = [c for c in cands if c["kind"] == kind]
                ax.scatter([c[key] for c in sub], [c["damage"][dmg] for c in sub], s=18, color=COLORS[kind],
                           label=LABELS[kind])
            ax.scatter([choice[key]], [choice["damage"][dmg]], s=90, facecolors="none", edgecolors="black",
                       label="SPRINT's choice")
            rho = st["correlations"]
            name = "zeta_tilde" if key == "pseudo" else "zeta"
            txt = ", ".join(f"{s}: {rho[s][f'{name} ~ {dmg}']['rho']:+.2f}" for s in ("all", "attn", "mlp"))
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_yscale("symlog", linthresh=0.01)  # removals that lower the NLL (tuning over-compensates) show too
            ax.axhline(0, color="grey", lw=0.5)
            ax.set_xlabel(f"{sym} (step {st['step']})")
            ax.set_ylabel(f"Δ NLL, {dmg} (symlog)")
            ax.set_title(f"Spearman {txt}", fontsize=8)
            if col == 0:
                ax.legend(fontsize=7)
    return _save(plt, fig, path, dpi=120)


def fig3b_figure(result: dict, path: str | Path) -> Path:
    """The paper's Fig. 3b from the first probed step: each candidate's rank by sensitivity before tuning (ζ̃) and
    after (ζ) against its sublayer index (rank 1 = least sensitive), with the rank of the damage its removal (with
    the tuning) measurably does, and the two sensitivity ranks against each other."""
    plt = _plt()
    st = result["steps"][0]
    cands = st["candidates"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1.8, 1]})
    s = [c["s"] for c in cands]
    ax1.plot(s, [c["rank_pseudo"] for c in cands], "o-", color="tab:grey", ms=3, lw=0.8, label="before tuning (ζ̃)")
    ax1.plot(s, [c["rank_sensitivity"] for c in cands], "o-", color="tab:red", ms=3, lw=0.8, label="after tuning (ζ)")
    dmg = "wikitext2" if "wikitext2" in cands[0]["rank_damage"] else next(iter(cands[0]["rank_damage"]))
    ax1.plot(s, [c["rank_damage"][dmg] for c in cands], ":", color="tab:green", lw=0.9,
             label=f"measured damage after tuning ({dmg} NLL)")
    marked = set()
    for key, color in (("rank_pseudo", "tab:grey"), ("rank_sensitivity", "tab:red")):
        best = min(cands, key=lambda c: c[key])
        if best["s"] in marked:
            continue
        marked.add(best["s"])
        ax1.annotate(f"{LABELS[best['kind']]} {best['layer']}", (best["s"], best[key]), color=color, fontsize=8,
                     xytext=(0, -12), textcoords="offset points", ha="center")
    ax1.invert_yaxis()
    ax1.set_xlabel("sublayer index (even: attention, odd: MLP)")
    ax1.set_ylabel("rank by sensitivity (1 = least)")
    ax1.set_title(f"Ranks before and after tuning, step {st['step']} (cf. paper Fig. 3b)")
    ax1.legend(fontsize=8)
    for kind in ("attn", "mlp"):
        sub = [c for c in cands if c["kind"] == kind]
        ax2.scatter([c["rank_pseudo"] for c in sub], [c["rank_sensitivity"] for c in sub], s=16, color=COLORS[kind],
                    label=LABELS[kind])
    n = len(cands)
    ax2.plot([1, n], [1, n], color="black", lw=0.5)
    rho = st["correlations"]["all"]["zeta_tilde ~ zeta"]["rho"]
    ax2.set_xlabel("rank before tuning (ζ̃)")
    ax2.set_ylabel("rank after tuning (ζ)")
    ax2.set_title(f"Spearman {rho:+.2f}", fontsize=9)
    ax2.legend(fontsize=8)
    return _save(plt, fig, path, dpi=130)


def write_outputs(result: dict, output: str | Path) -> list[Path]:
    """The Markdown table and PNGs of an analysis result beside its JSON ``output`` (stem.md, stem*.png)."""
    from sprint.analysis.tables import latency_draws_markdown, sensitivity_markdown, tuning_strength_markdown
    from sprint.io import atomic_write_text

    stem = Path(output).with_suffix("")
    if result["analysis"] == "tuning-strength":
        atomic_write_text(f"{stem}.md", tuning_strength_markdown(result))
        return [Path(f"{stem}.md")]
    if result["analysis"] == "latency-draws":
        atomic_write_text(f"{stem}.md", latency_draws_markdown(result))
        return [Path(f"{stem}.md"), latency_draws_figure(result, f"{stem}.png")]
    atomic_write_text(f"{stem}.md", sensitivity_markdown(result))
    return [Path(f"{stem}.md"), scatter_figure(result, f"{stem}_scatter.png"),
            fig3b_figure(result, f"{stem}_fig3b.png")]
