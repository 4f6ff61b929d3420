"""Builders shared by the tests (imported as ``helpers``: pytest puts this folder on the path through conftest.py):
random calibration ids, profiled latency tables with recorded rounds, and the files of a results tree (metrics and pruning records) for the report and the study."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import torch

from sprint.layout import point_name
from sprint.measure.draws import table_from_rounds
from sprint.measure.table import LatencyTable

MODEL = "tiny-llama"
TASKS = ("arc_easy", "piqa")


def random_ids(n: int = 12, t: int = 24, seed: int = 0, low: int = 3, high: int = 90) -> torch.Tensor:
    """Calibration token ids [n, t], seeded, in [low, high) (clear of the tiny tokenizer's special ids)."""
    return torch.randint(low, high, (n, t), generator=torch.Generator().manual_seed(seed))


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def metrics_record(method: str, target: float | None, seed: int, acc: float, speedup: float, ppl_factor: float = 1.0,
                   point: str | None = None) -> dict:
    """A metrics file: 50 documents per task (``acc`` of them right), perplexity 20 / acc x ``ppl_factor`` on 8
    windows, measured speedup with a ±0.01 CI; its point is the dense model's, ``point`` or that of ``target``."""
    right = round(50 * acc)
    ppl = 20.0 / acc * ppl_factor
    point = "x1" if method == "dense" else point or point_name(target)
    return {"method": method, "target_speedup": target, "point": point, "estimated_speedup": target,
            "prune_seed": None if method == "dense" else seed,
            "tasks": {t: {"metric": "acc_norm", "value": acc, "stderr": 0.01, "n": 50, "total": 1000,
                          "doc_ids": list(range(0, 100, 2)), "correct": [1] * right + [0] * (50 - right)}
                      for t in TASKS},
            "mean_accuracy": acc, "mean_accuracy_stderr": math.sqrt(2 * 0.01**2) / 2,
            "wikitext2_ppl": ppl, "wikitext2_ppl_ci": [0.99 * ppl, 1.01 * ppl], "wikitext2_tokens": 8 * 255,
            "wikitext2_window_nll": [math.log(ppl) + d for d in (0.01, -0.01) * 4],
            "latency_s": 1.0 / speedup, "dense_latency_s": 1.0, "measured_speedup": speedup,
            "measured_speedup_ci": [speedup - 0.01, speedup + 0.01],
            "speedup": {"median": speedup, "ci95": [speedup - 0.01, speedup + 0.01], "spread": 0.01 / speedup,
                        "rounds": 12, "attempts": 1},
            "eval_params": {"limit": 50, "seed": 0, "data_source": "mirror", "ppl_seq_len": 256}}


def pruning_record(method: str, target: float, seed: int, removed: list[tuple[int, str]], **params) -> dict:
    return {"method": method, "model": MODEL, "target_speedup": target, "point": point_name(target),
            "estimated_speedup": target + 0.01,
            "wall_time_s": 100.0 * (seed + 1) * (3 if method == "sprint-e" else 1), "num_tunings": 4 + seed,
            "peak_rss_mb": 900.0, "num_layers": 4,
            "params": {"seed": seed, "alpha": 8, "beta": 5, "tune_ratio": 0.5, "calibration_n": 16,
                       "calibration_seq_len": 128, **params},
            "removed": [{"layer": layer, "kind": kind, "importance": 0.1, "sensitivity": 0.2, "tuned_layer": None}
                        for layer, kind in removed]}


def llamacpp_record(models: dict[tuple[str, str, int | None], tuple[float, float, float]],
                    control: tuple[float, float, float] | None = None, other: float = 9.0, model: str = MODEL) -> dict:
    """A llamacpp.json of ``sprint export`` (export stage's layout): per (method, point, seed) its headline e2e speedup
    (value, lo, hi) at f16 on 1 thread; f16 on 2 threads and q8_0 carry ``other`` (not the headline); the dense
    entry's second copy (the control) ``control`` at the headline's setting."""
    def timed(value: float, lo: float, hi: float) -> dict:
        e2e = {"value": value, "ci95": [lo, hi], "spread": (hi - lo) / 2 / value}
        return {"pp_speedup": {"value": other, "ci95": [other, other], "spread": 0.0}, "tg_speedup": e2e,
                "e2e_speedup": e2e, "pp_tok_s": 100.0, "tg_tok_s": 20.0, "rounds": 8}

    entries = {"dense": {"checkpoint": "data/models/m", "method": "dense", "point": "x1", "prune_seed": None,
                         "label": "dense", "gguf": {}, "llamacpp_speedup": 1.0, "llamacpp_speedup_ci": [1.0, 1.0],
                         "llamacpp": {"f16": {"t1": timed(1.0, 1.0, 1.0)}}}}
    if control is not None:
        entries["dense"]["llamacpp_control"] = {"f16": {"t1": timed(*control), "t2": timed(other, other, other)},
                                                "q8_0": {"t1": timed(other, other, other)}}
    for (method, point, seed), (value, lo, hi) in models.items():
        entries[f"results/{model}/pruned/{method}/seed{seed}/{point}"] = {
            "checkpoint": f"results/{model}/pruned/{method}/seed{seed}/{point}", "method": method, "point": point,
            "prune_seed": seed, "label": f"{method}/{point}/seed{seed}", "gguf": {},
            "llamacpp": {"f16": {"t1": timed(value, lo, hi), "t2": timed(other, other, other)},
                         "q8_0": {"t1": timed(other, other, other)}},
            "llamacpp_speedup": value, "llamacpp_speedup_ci": [lo, hi]}
    return {"format": "gguf", "engine": "llama-cpp-python 0.3.36", "cpu": "test CPU (2 cores)",
            "protocol": {"prompt_len": 64, "gen_len": 16, "threads": [1, 2], "warmup": 1, "min_rounds": 8,
                         "max_rounds": 30, "max_spread": 0.03, "estimator": "hodges-lehmann", "seed": 0,
                         "control": control is not None, "timing": "step"},
            "headline": {"outtype": "f16", "threads": 1, "phase": "e2e"}, "check": None, "models": entries}


def profiled_table(seed: int = 0, rounds: int = 9, n: int = 1, attn: float = 0.05, mlp: float = 0.08) -> LatencyTable:
    """A table as 'sprint profile' writes it, from synthetic rounds (the machine's speed drifts from round to round)."""
    rng = random.Random(seed)
    times = {"dense": [], "attn": [], "mlp": []}
    for _ in range(rounds):
        speed = rng.uniform(0.9, 1.1)
        times["dense"].append(speed * rng.uniform(0.99, 1.01))
        times["attn"].append(speed * (1 - n * attn) * rng.uniform(0.99, 1.01))
        times["mlp"].append(speed * (1 - n * mlp) * rng.uniform(0.99, 1.01))
    base = LatencyTable("cpu", "tiny", 8, 4, 1.0, attn, mlp,
                        extra={"times_s": times, "n_removed": n, "protocol": {"estimator": "hodges-lehmann"}})
    measured = table_from_rounds(base, range(rounds))
    return LatencyTable("cpu", "tiny", 8, 4, measured.dense_s, measured.t_attn_s, measured.t_mlp_s,
                        extra=base.extra)
