"""write_report over a fake results tree: files, table values, valid PNGs, malformed input, partial runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sprint.errors import SprintError
from sprint.report import write_report

MODEL = "tiny-llama"
TASKS = ("arc_easy", "piqa")
BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _metrics(method: str, target: float | None, seed: int, acc: float, speedup: float) -> dict:
    return {"method": method, "target_speedup": target, "estimated_speedup": target, "seed": seed,
            "tasks": {t: {"metric": "acc_norm", "value": acc, "stderr": 0.01, "n": 50} for t in TASKS},
            "mean_accuracy": acc, "wikitext2_ppl": 20.0 / acc, "latency_s": 1.0 / speedup, "dense_latency_s": 1.0,
            "measured_speedup": speedup, "eval_params": {"limit": 50, "seed": seed, "data_source": "mirror"}}


def _pruning(method: str, target: float, seed: int, removed: list[tuple[int, str]]) -> dict:
    return {"method": method, "model": MODEL, "target_speedup": target, "estimated_speedup": target + 0.01,
            "wall_time_s": 100.0 * (seed + 1) * (3 if method == "sprint-e" else 1), "num_tunings": 4 + seed,
            "peak_rss_mb": 900.0, "num_layers": 4,
            "params": {"seed": seed, "alpha": 8, "beta": 5, "tune_ratio": 0.5, "calibration_n": 16,
                       "calibration_seq_len": 128},
            "removed": [{"layer": layer, "kind": kind, "importance": 0.1, "sensitivity": 0.2, "tuned_layer": None}
                        for layer, kind in removed]}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """2 methods x 2 targets x 2 seeds; SPRINT at 1.2x has mean accuracies 0.60 and 0.70 -> 65.00 %."""
    root = tmp_path / "results"
    m = root / MODEL
    _json(m / "latency.json", {"device": "cpu", "model": MODEL, "prompt_len": 64, "gen_len": 32, "dense_s": 2.5,
                                "t_attn_s": [0.1] * 4, "t_mlp_s": [0.2] * 4})
    _json(m / "metrics" / "dense.json", _metrics("dense", None, 0, 0.75, 1.0))
    for method in ("sprint", "sprint-e"):
        for target in (1.2, 1.5):
            for seed in (0, 1):
                acc = 0.6 + 0.1 * seed - (target - 1.2)
                removed = [(2, "attn"), (3, "attn")] + ([(1, "mlp")] if target == 1.5 else [])
                _json(m / "pruned" / method / f"seed{seed}" / f"x{target}" / "pruning.json",
                      _pruning(method, target, seed, removed))
                _json(m / "metrics" / method / f"seed{seed}" / f"x{target}.json",
                      _metrics(method, target, seed, acc, target - 0.05))
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
    for stem in ("main.csv", "ablation.csv", "speedup.csv", "accuracy_speedup.png", "time_accuracy.png",
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
    _json(root / MODEL / "metrics" / "dense.json", _metrics("dense", None, 0, 0.75, 1.0))
    written = write_report(root, root / "report.md")
    text = (root / "report.md").read_text()
    assert "| Dense | 1× | 1 |" in text and "latency.json" in text and "no pruned model" in text
    assert "no benchmark TSVs" in text
    assert {p.name for p in written} == {"report.md", f"{MODEL}_main.csv", f"{MODEL}_accuracy_speedup.png"}


def test_partial_run_lists_missing_metrics(results: Path) -> None:
    (results / MODEL / "metrics" / "sprint-e" / "seed1" / "x1.5.json").unlink()
    text = write_report(results, results / "report.md")[-1].read_text()
    assert "metrics of SPRINT-e 1.5× seed 1" in text
