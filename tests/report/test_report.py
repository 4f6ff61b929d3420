"""write_report over a fake results tree: files, table values, valid PNGs, malformed input, partial runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from sprint.errors import SprintError
from sprint.report import write_report

from helpers import MODEL, metrics_record, pruning_record, write_json

BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """2 methods x 2 targets x 2 seeds; SPRINT at 1.2x has mean accuracies 0.60 and 0.70 -> 65.00 %.

    SPRINT-e answers every document as SPRINT does (same accuracy) with a 10 % higher perplexity.
    """
    root = tmp_path / "results"
    m = root / MODEL
    write_json(m / "latency.json", {"device": "cpu", "model": MODEL, "prompt_len": 64, "gen_len": 32, "dense_s": 2.5,
                                    "t_attn_s": [0.1] * 4, "t_mlp_s": [0.2] * 4,
                                    "spread": {"dense_s": 0.008, "t_attn_s": 0.021}, "max_spread": 0.021})
    write_json(m / "metrics" / "dense.json", metrics_record("dense", None, 0, 0.75, 1.0))
    for method in ("sprint", "sprint-e"):
        for target in (1.2, 1.5):
            for seed in (0, 1):
                acc = 0.6 + 0.1 * seed - (target - 1.2)
                removed = [(2, "attn"), (3, "attn")] + ([(1, "mlp")] if target == 1.5 else [])
                write_json(m / "pruned" / method / f"seed{seed}" / f"x{target}" / "pruning.json",
                           pruning_record(method, target, seed, removed))
                ppl_factor = 1.1 if method == "sprint-e" else 1.0
                write_json(m / "metrics" / method / f"seed{seed}" / f"x{target}.json",
                           metrics_record(method, target, seed, acc, target - 0.05, ppl_factor))
    for rule, rss, s in (("prune", 1500.5, 30.0), ("evaluate", 2100.0, 12.5)):
        path = root / "benchmarks" / rule / MODEL / "sprint" / "seed0.tsv"
        path.parent.mkdir(parents=True)
        path.write_text(BENCH_HEADER + f"{s}\t0:00:30\t{rss}\t1\t1\t1\t0\t0\t50\t{s * 2}\n")
    return root


def test_full_report(results: Path) -> None:
    output = results / "report.md"
    written = write_report(results, output)
    assert output in written and all(p.is_file() for p in written)
    names = {p.name for p in written}
    for stem in ("main.csv", "perplexity.csv", "paired.csv", "ablation.csv", "speedup.csv", "accuracy_speedup.png",
                 "ppl_speedup.png", "time_accuracy.png",
                 "pattern_x1.2.png", "pattern_x1.5.png", "speedup_estimate.png"):
        assert f"{MODEL}_{stem}" in names
    assert "benchmarks.csv" in names
    assert all(p.parent == results / "report" for p in written if p != output)
    text = output.read_text()
    for needle in ("### Main results", "### Ablation (paper Table 1)", "### Estimated vs measured speedup",
                   "### Pipeline stages", "mean acc. (%)", "WikiText-2 ppl", "16×128", "limit per task = 50",
                   "64 prompt + 32 generated tokens on cpu", "mean ± sample std", "alpha=8, beta=5",
                   "| SPRINT | 1.2× | 2 |", "65.00 ± 7.07", "| Dense | 1× | 1 |", "75.00",
                   f"![Accuracy vs measured speedup (paper Fig. 5)](report/{MODEL}_accuracy_speedup.png)",
                   "| prune | tiny-llama | 1 | 30.0 |", "1500.5"):
        assert needle in text, needle
    assert "SPRINT-e" in text.split("### Ablation")[1]
    for png in (p for p in written if p.suffix == ".png"):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
        assert Image.open(png).mode == "P", png  # palette PNGs: the study commits them


def test_malformed_json_names_file(results: Path) -> None:
    bad = results / MODEL / "pruned" / "sprint" / "seed0" / "x1.2" / "pruning.json"
    bad.write_text("{not json")
    with pytest.raises(SprintError, match="pruning.json"):
        write_report(results, results / "report.md")


def test_wrong_field_type_names_file(results: Path) -> None:
    bad = results / MODEL / "metrics" / "sprint" / "seed1" / "x1.5.json"
    bad.write_text(json.dumps({"method": "sprint", "target_speedup": 1.5, "seed": 1, "tasks": {"piqa": {}}}))
    with pytest.raises(SprintError, match="x1.5.json"):
        write_report(results, results / "report.md")


def test_only_dense_metrics(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_json(root / MODEL / "metrics" / "dense.json", metrics_record("dense", None, 0, 0.75, 1.0))
    written = write_report(root, root / "report.md")
    text = (root / "report.md").read_text()
    assert "| Dense | 1× | 1 |" in text and "latency.json" in text and "no pruned model" in text
    assert "no benchmark TSVs" in text
    assert {p.name for p in written} == {"report.md", f"{MODEL}_main.csv", f"{MODEL}_perplexity.csv",
                                         f"{MODEL}_accuracy_speedup.png", f"{MODEL}_ppl_speedup.png",
                                         f"{MODEL}_chance.csv"}
    assert "| Dense | 1× | 1 | 1.000 [0.990, 1.010] | ±1.0% |" in text and "75.00 ± 0.71" in text


def test_partial_run_lists_missing_metrics(results: Path) -> None:
    (results / MODEL / "metrics" / "sprint-e" / "seed1" / "x1.5.json").unlink()
    text = write_report(results, results / "report.md")[-1].read_text()
    assert "metrics of SPRINT-e 1.5× seed 1" in text


def _section(text: str, title: str) -> str:
    return text.split(f"### {title}\n")[1].split("\n### ")[0]


def test_uncertainty_and_paired_marks(results: Path) -> None:
    """± stderr and [CI] for one seed, the paired marks, spreads, and the headline switch (accuracy cannot
    separate SPRINT from SPRINT-e, perplexity can)."""
    text = write_report(results, results / "report.md")[-1].read_text()
    assert "dense_s ±0.8%, t_attn_s ±2.1%; max ±2.1%" in text
    assert text.index("### Headline: perplexity") < text.index("### Perplexity") < text.index("### Main results")
    assert "(arc_easy 50, piqa 50 documents per task) cannot separate the methods" in text
    main = _section(text, "Main results")
    assert "| Dense | 1× | 1 | 1.000 [0.990, 1.010] | ±1.0% |" in main and "| 75.00 ± 0.71 |" in main
    assert "| 65.00 ± 7.07 |" in main and "best / best" in main and "≈ best / ≈ best" in main
    assert "accuracy on a seeded random subset of each task's documents (arc_easy 50 of 1000, piqa 50 of 1000" in main
    ppl = _section(text, "Perplexity")
    assert "on 2040 tokens per model" in ppl and "| best / best |" in ppl and "| worse / worse |" in ppl
    paired = _section(text, "Paired comparisons with the best method")
    assert "| 1.2× | 0 | SPRINT | 60.00 | +0.00 [+0.00, +0.00] | best | 33.33 |" in paired
    assert "| 1.2× | 0 | SPRINT-e | 60.00 | +0.00 [+0.00, +0.00] | ≈ best | 36.67 | +3.33 [+3.3" in paired
    assert paired.count("| worse |") == 4
    assert "paired bootstrap, 2000 resamples" in paired and "arc_easy 50, piqa 50 per task" in paired
    speed = _section(text, "Estimated vs measured speedup")
    assert "| SPRINT | 1.2× | 0 | 1.200 | 1.150 [1.140, 1.160] | ±0.9% | 4.35 |" in speed
    assert "second copy of itself (a check of the protocol, ≈ 1): 1.000 [0.990, 1.010] (spread ±1.0%)" in speed


def test_separable_accuracy_keeps_accuracy_first(results: Path) -> None:
    path = results / MODEL / "metrics" / "sprint-e" / "seed0" / "x1.2.json"
    worse = json.loads(path.read_text())
    for t in worse["tasks"].values():
        t["correct"] = [0] * 50
    path.write_text(json.dumps(worse))
    text = write_report(results, results / "report.md")[-1].read_text()
    assert "### Headline" not in text and text.index("### Main results") < text.index("### Perplexity")
    paired = _section(text, "Paired comparisons with the best method")
    row = next(r for r in paired.splitlines() if r.startswith("| 1.2× | 0 | SPRINT-e |"))
    assert "| 0.00 | -60.00 [" in row and "] | worse |" in row
    assert "| worse / ≈ best |" in _section(text, "Main results")


def test_mismatched_documents_are_not_compared(results: Path) -> None:
    path = results / MODEL / "metrics" / "sprint-e" / "seed1" / "x1.5.json"
    other = json.loads(path.read_text())
    other["tasks"]["piqa"]["doc_ids"] = list(range(1, 101, 2))
    path.write_text(json.dumps(other))
    text = write_report(results, results / "report.md")[-1].read_text()
    assert "acc at 1.5× seed 1 not compared: paired comparison: the models were evaluated on different items of " \
           "piqa" in text


def test_budget_notes(results: Path) -> None:
    """SLEB scoring perplexity on 1 calibration window is said next to the main table and the time figure."""
    m = results / MODEL
    write_json(m / "pruned" / "sleb" / "seed0" / "x1.2" / "pruning.json",
               pruning_record("sleb", 1.2, 0, [(1, "attn"), (1, "mlp")], ppl_windows=1))
    write_json(m / "metrics" / "sleb" / "seed0" / "x1.2.json", metrics_record("sleb", 1.2, 0, 0.5, 1.18))
    text = write_report(results, results / "report.md")[-1].read_text()
    note = ("SLEB scored perplexity on 1 calibration window of 128 tokens (papers: the whole calibration set, "
            "16×128), which makes it cheaper and handicaps its choices.")
    assert note in _section(text, "Main results")
    assert note in text.split(f"(report/{MODEL}_time_accuracy.png)")[1]


def test_only_the_metrics_the_dag_made_are_reported(results: Path) -> None:
    """With the metrics files the pipeline made (the report rule passes them), leftovers of an earlier
    configuration (here SPRINT-e's runs, and a benchmark's stray latency.json) stay out of the report."""
    write_json(results / "bench" / "latency.json", {"dense_s": 1.0, "t_attn_s": 0.1, "t_mlp_s": 0.1})
    made = [results / MODEL / "metrics" / "dense.json",
            *sorted((results / MODEL / "metrics" / "sprint").glob("seed*/x*.json"))]
    text = (write_report(results, results / "report.md", made), (results / "report.md").read_text())[1]
    assert "| SPRINT-e |" not in text and "## bench" not in text and "| SPRINT | 1.2× | 2 |" in text
    assert "Missing: nothing" in text
    everything = write_report(results, results / "all.md") and (results / "all.md").read_text()
    assert "| SPRINT-e |" in everything and "## bench" in everything
    with pytest.raises(SprintError, match="not found"):
        write_report(results, results / "x.md", [results / MODEL / "metrics" / "nope.json"])


def test_measured_speedups_timed_together_fill_the_metrics(results: Path) -> None:
    """latency.speedups: together: metrics files carry no speedup; the report takes each run's from speedup.json."""
    for path in (results / MODEL / "metrics").rglob("*.json"):
        d = json.loads(path.read_text())
        for key in ("measured_speedup", "measured_speedup_ci", "speedup", "latency_s", "dense_latency_s"):
            d.pop(key)
        path.write_text(json.dumps(d))
    entry = {"method": "sprint", "target_speedup": 1.2, "point": "x1.2", "prune_seed": 0, "measured_speedup": 1.234,
             "measured_speedup_ci": [1.2, 1.25], "speedup": {"median": 1.234, "ci95": [1.2, 1.25], "spread": 0.013,
                                                             "rounds": 20, "attempts": 1}}
    dense = {**entry, "method": "dense", "target_speedup": 1.0, "point": "x1", "prune_seed": None,
             "measured_speedup": 0.996, "measured_speedup_ci": [0.98, 1.01]}
    write_json(results / MODEL / "speedup.json", {"models": {"dense": dense, "results/x/sprint/seed0/x1.2": entry}})
    text = (write_report(results, results / "report.md"), (results / "report.md").read_text())[1]
    assert "1.234 [1.200, 1.250]" in text and "0.996 [0.980, 1.010]" in text


def _weights_pruning_record(method: str, point: str, seed: int) -> dict:
    """pruning.json of a weights method (sprint.methods.driver.weights_record): no target, no estimate, nothing
    removed."""
    pattern = {"2of4": "2:4", "u50": "unstructured"}[point]
    return {"method": method, "model": MODEL, "target_speedup": None, "point": point, "estimated_speedup": None,
            "sparsity": 0.5, "pattern": pattern, "wall_time_s": 20.0 if method == "wanda" else 60.0,
            "num_tunings": 0, "peak_rss_mb": 800.0, "num_layers": 4,
            "params": {"seed": seed, "sparsity": 0.5, "pattern": pattern, "calibration_n": 16,
                       "calibration_seq_len": 128}, "zeros": {}, "removed": []}


def test_weight_settings_are_points_of_their_own(results: Path) -> None:
    """Wanda / SparseGPT at 2:4 and 50% unstructured: rows named by their setting, compared with each other at it,
    timed (≈1× here) but absent from the estimate table, and no pruning-pattern figure of theirs."""
    m = results / MODEL
    for method, acc in (("wanda", 0.5), ("sparsegpt", 0.56)):
        for point in ("2of4", "u50"):
            write_json(m / "pruned" / method / "seed0" / point / "pruning.json",
                       _weights_pruning_record(method, point, 0))
            metrics = metrics_record(method, None, 0, acc + (point == "u50") * 0.04, 0.99, point=point)
            if point == "2of4":  # as a GPU run records it (sprint.measure.sparse_kernels)
                metrics["speedup"]["kernels"] = {"kernels": "semi-structured 2:4 (cusparselt)", "sparse_linears": 28,
                                                 "dense_linears": 0}
            write_json(m / "metrics" / method / "seed0" / f"{point}.json",
                       {**metrics, "estimated_speedup": None})
    written = write_report(results, results / "report.md")
    text = written[-1].read_text()
    assert ("2:4 models were timed with PyTorch's semi-structured 2:4 (cusparselt) kernels, the others with the dense "
            "ones") in text
    assert "targets: 1.2×, 1.5×; weight settings: 2:4, 50% unstr.; seeds" in text
    main = _section(text, "Main results")
    assert "| method | target / setting | seeds |" in main
    assert "| Wanda | 2:4 | 1 | 0.990 [0.980, 1.000] | ±1.0% | – |" in main
    assert main.index("| SparseGPT | 2:4 |") < main.index("| SparseGPT | 50% unstr. |")
    assert main.index("| SPRINT | 1.5× |") < main.index("| Wanda | 2:4 |")  # sublayer methods first, as before
    paired = _section(text, "Paired comparisons with the best method")
    assert "| 2:4 | 0 | SparseGPT | 56.00 | +0.00 [+0.00, +0.00] | best |" in paired
    assert "| 2:4 | 0 | Wanda | 50.00 | -6.00 [" in paired
    assert "| 50% unstr. | 0 | Wanda | 54.00 |" in paired
    assert "Wanda" not in _section(text, "Estimated vs measured speedup")
    assert "metrics of" not in text and "pruning.json of" not in text  # every record paired with its metrics
    names = {p.name for p in written}
    assert f"{MODEL}_time_accuracy.png" in names and not any("pattern_2of4" in n or "nan" in n for n in names)
