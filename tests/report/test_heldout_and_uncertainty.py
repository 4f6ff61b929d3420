"""The report's held-out perplexity (a corpus never calibrated on, paired like WikiText-2's) and its paragraph on
what SPRINT's removals rest on (the latency table's uncertainty against each pick's flip ratio)."""

from __future__ import annotations

import math
from pathlib import Path

from sprint.measure.draws import ratio_interval
from sprint.report import write_report

from helpers import MODEL, metrics_record, profiled_table, pruning_record, write_json


def with_heldout(record: dict, ppl: float, corpus: str = "hellaswag_gold") -> dict:
    """``record`` with a held-out corpus scored on 8 windows at perplexity ``ppl``."""
    nll = [math.log(ppl) + d for d in (0.02, -0.02) * 4]
    return {**record, f"{corpus}_ppl": ppl, f"{corpus}_ppl_ci": [0.99 * ppl, 1.01 * ppl],
            f"{corpus}_window_nll": nll, f"{corpus}_tokens": 8 * 255,
            "eval_params": {**record["eval_params"], "heldout_ppl": [corpus]}}


def results_tree(root: Path, heldout: bool, flips: list[float | None] = (), table=None) -> Path:
    m = root / MODEL
    write_json(m / "latency.json", (table or profiled_table(rounds=15)).to_dict())
    dense = metrics_record("dense", None, 0, 0.75, 1.0)
    write_json(m / "metrics" / "dense.json", with_heldout(dense, 30.0) if heldout else dense)
    # SPRINT: lower WikiText-2 perplexity (acc 0.7: 28.6) than ShortGPT (acc 0.6: 33.3), higher held-out perplexity
    for method, acc, held in (("sprint", 0.7, 95.0), ("shortgpt", 0.6, 78.0)):
        removed = [(2, "attn"), (3, "mlp")]
        record = pruning_record(method, 1.2, 0, removed)
        if method == "sprint":
            for r, flip in zip(record["removed"], flips):
                if flip is not None:
                    r["flip_ratio"] = flip
        write_json(m / "pruned" / method / "seed0" / "x1.2" / "pruning.json", record)
        metrics = metrics_record(method, 1.2, 0, acc, 1.15)
        write_json(m / "metrics" / method / "seed0" / "x1.2.json", with_heldout(metrics, held) if heldout else metrics)
    return root


def test_heldout_perplexity_is_reported_and_paired(tmp_path: Path) -> None:
    text_of = lambda root: (write_report(results_tree(root, True), root / "report.md"),  # noqa: E731
                            (root / "report.md").read_text())[1]
    text = text_of(tmp_path / "with")
    assert "held-out ppl (hellaswag_gold)" in text
    assert "| SPRINT | 1.2× | 1 | 28.57 [28.29, 28.86] | best | 95.00 [94.05, 95.95] | worse |" in text
    assert "| ShortGPT | 1.2× | 1 | 33.33 [33.00, 33.67] | worse | 78.00 [77.22, 78.78] | best |" in text
    assert "Held-out perplexity: hellaswag_gold, another domain never used for calibration" in text
    write_report(results_tree(tmp_path / "without", False), tmp_path / "without" / "report.md")
    assert "held-out" not in (tmp_path / "without" / "report.md").read_text()


def test_the_report_says_which_picks_the_latency_tables_noise_could_flip(tmp_path: Path) -> None:
    table = profiled_table(rounds=15)
    lo, hi = ratio_interval(table)
    inside, outside = (lo + hi) / 2, hi * 1.5
    root = results_tree(tmp_path / "r", False, [inside, outside], table)
    write_json(root / MODEL / "analysis" / "latency-draws.json",
               {"target": 1.2, "summary": {"draws": 12, "sprint_beats_best_other": 5, "sprint_separated_better": 4,
                                           "sprint_separated_worse": 6}})
    write_report(root, tmp_path / "r" / "report.md")
    text = (tmp_path / "r" / "report.md").read_text()
    assert f"its 95% interval over the profile's own recorded rounds is [{lo:.2f}, {hi:.2f}]" in text
    assert f"seed 0: 1 of 2 (at {inside:.2f})" in text
    assert "A re-profile of this machine could change SPRINT's removals" in text
    assert "SPRINT's perplexity beat the best other method's in 5 of 12 draws (4 separated" in text

    quiet = results_tree(tmp_path / "q", False, [outside, None], table)
    write_report(quiet, tmp_path / "q" / "report.md")
    text = (tmp_path / "q" / "report.md").read_text()
    assert "seed 0: 0 of 1" in text and "No pick flips inside it" in text
    old = results_tree(tmp_path / "o", False, [], table)  # records from before flip ratios: no paragraph
    write_report(old, tmp_path / "o" / "report.md")
    assert "rest on" not in (tmp_path / "o" / "report.md").read_text()
