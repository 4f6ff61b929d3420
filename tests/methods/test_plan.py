"""The plan (issue 26): terms from the config alone, one-line errors over a budget, the bounded layout's claims, and
the code facts it mirrors (checkpoint positions, the held-activation budget, what the pruner stores)."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from helpers import random_ids
from sprint.errors import SprintError
from sprint.measure.table import LatencyTable
from sprint.methods import PruneConfig
from sprint.methods import plan as planning
from sprint.methods.driver import prune_model
from sprint.methods.sprint import HELD_BYTES, SprintPruner
from sprint.model.sublayers import CheckpointStore, SpillStore, SublayerView
from sprint.model.tiny import tiny_model

LLAMA3 = {  # the published config.json shapes
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
               vocab_size=128256, num_hidden_layers=32),
    "70b": dict(hidden_size=8192, intermediate_size=28672, num_attention_heads=64, num_key_value_heads=8,
                vocab_size=128256, num_hidden_layers=80),
}


def shapes(size):
    from transformers import LlamaConfig

    return planning.shapes_from_config(LlamaConfig(**LLAMA3[size], tie_word_embeddings=False))


def test_parameter_counts_from_the_config_alone():
    assert abs(shapes("8b").params - 8.03e9) < 0.01e9
    assert abs(shapes("70b").params - 70.55e9) < 0.01e9


@pytest.mark.parametrize("text,expected", [("256GiB", 256 * 2**30), ("80GB", 80 * 10**9), ("48G", 48 * 2**30),
                                           ("1024", 1024), ("1.5T", int(1.5 * 2**40))])
def test_sizes(text, expected):
    assert planning.parse_size(text) == expected


def test_the_plan_mirrors_the_code():
    assert planning.HELD_BYTES == HELD_BYTES
    for S, alpha in ((60, 8), (4, 8), (64, 8), (160, 8), (8, 1)):
        ck = CheckpointStore(S, alpha, torch.zeros(1))
        assert planning.checkpoint_positions(S, alpha) == ck.positions


def test_full_size_goals_of_the_issue():
    """Llama-3-8B at 128 x 2048 in bf16 on one 80 GB GPU: the bounded layout fits 48 GiB of host memory (legacy did
    not); Llama-3-70B fits one GPU with offload (sprint.model.offload, store "memory": the decoder layers in host
    memory, the embeddings and head on the GPU) within 256 GiB of host."""
    cfg = PruneConfig(method="sprint", target_speedup=1.5)
    old = planning.plan_run(shapes("8b"), 128, 2048, cfg, device="cuda", dtype="bfloat16", layout="legacy")
    new = planning.plan_run(shapes("8b"), 128, 2048, cfg, device="cuda", dtype="bfloat16", host_memory=48 * 2**30)
    assert old.host_peak > 100 * 2**30 and new.host_peak <= 48 * 2**30 and new.gpu_peak < 80e9
    with pytest.raises(SprintError, match="GPU memory per GPU.*--gpu-memory.*weights"):
        planning.plan_run(shapes("70b"), 128, 2048, PruneConfig(method="sprint", target_speedup=1.5, tune_ratio=0.75),
                          device="cuda", dtype="bfloat16").check(gpu_memory=80 * 10**9)
    big = planning.plan_run(shapes("70b"), 128, 2048, PruneConfig(method="sprint", target_speedup=1.5, tune_ratio=0.75),
                            device="cuda", dtype="bfloat16", offload=True, host_memory=256 * 2**30)
    big.check(host_memory=256 * 2**30, gpu_memory=80 * 10**9)
    assert "dense references" in big.disk
    assert big.host["weights"] == 80 * shapes("70b").layer_params * 2  # the decoder layers only
    assert big.gpu["weights"] < 2 * shapes("70b").layer_params * 2 + 2 * shapes("70b").vocab * 8192 * 2
    on_file = planning.plan_run(shapes("70b"), 128, 2048, PruneConfig(method="sprint", target_speedup=1.5,
                                                                      tune_ratio=0.75),
                                device="cuda", dtype="bfloat16", offload="file")
    assert on_file.host["weights"] == 3 * 8192 * 28672 * 2  # one MLP sublayer, read from the safetensors


def test_over_budget_is_one_line_naming_term_and_budget(tmp_path, tiny_model_dir):
    model = tiny_model_dir("llama", layers=4)
    env = {**os.environ, "SPRINT_MLFLOW": "0", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "sprint", "plan", "--model", str(model), "--n", "64", "--seq-len",
                           "64", "--throughput", "1e10", "--host-memory", "100MB", "--output", str(tmp_path / "p.json")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "--host-memory" in err[0] and "largest term is" in err[0] and "0.09 GiB" in err[0]
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["host_peak"] == sum(saved["host"].values())
    ok = subprocess.run([sys.executable, "-m", "sprint", "plan", "--model", str(model), "--n", "4", "--seq-len", "16",
                         "--throughput", "measure"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "first step" in ok.stdout and "dense references" in ok.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where no CUDA device is")
def test_measuring_a_gpu_throughput_without_a_gpu_is_one_line(tiny_model_dir):
    model = tiny_model_dir("llama", layers=2)
    env = {**os.environ, "SPRINT_MLFLOW": "0", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "sprint", "plan", "--model", str(model), "--device", "cuda"],
                          capture_output=True, text=True, env=env)
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(err) == 1 and "--throughput" in err[0], proc.stderr[-2000:]


def test_plan_resources_for_the_slurm_profile():
    entry = {"n": 128, "seq_len": 2048, "method": "sprint", "target_speedup": [1.5], "device": "cuda", "gpus": 1,
             "dtype": "bfloat16"}
    res = planning.plan_resources(entry, shapes=shapes("8b"))
    assert set(res) >= {"mem_mb", "gpus", "runtime_min"} and res["gpus"] == 1
    assert 20_000 < res["mem_mb"] < 80_000 and res["runtime_min"] > 10


def test_a_wider_store_dtype_is_refused():
    model = tiny_model("llama", layers=2).to(torch.bfloat16)
    table = LatencyTable("t", "t", 0, 0, 1.0, 0.05, 0.08)
    with pytest.raises(SprintError, match="wider than the model"):
        SprintPruner(SublayerView(model), random_ids(2, 8), table, store_dtype=torch.float32)
    SprintPruner(SublayerView(model), random_ids(2, 8), table, store_dtype=torch.bfloat16).close()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_spill_files_give_back_the_same_bits(tmp_path, dtype):
    store = SpillStore(tmp_path)
    t = torch.randn(3, 5, 7).to(dtype)
    store.put(1, t)
    assert store.nbytes() == 0 and store.disk_bytes() == t.numel() * t.element_size()
    back = store.get(1)
    assert back.dtype == dtype and torch.equal(back.view(torch.uint8) if dtype != torch.float32 else back,
                                               t.view(torch.uint8) if dtype != torch.float32 else t)
    store.pop(1)
    assert 1 not in store and not list(store.directory.iterdir())
    store.close()
    assert not store.directory.exists()


@pytest.mark.parametrize("extra", [{}, {"reference": "current", "distance": "l1"}])
def test_spilling_changes_no_number(tmp_path, extra):
    """Dense references, checkpoints and tuned rows in spill files: the same removals and weights as in memory."""
    results = []
    for execution in ({"dense_store": "memory"}, {"dense_store": "disk", "spill_dir": str(tmp_path),
                                                  "spill_checkpoints": True}):
        model = tiny_model("llama", layers=4)
        cfg = PruneConfig(method="sprint", target_speedup=1.5, alpha=4, beta=2, **extra)
        table = LatencyTable("t", "t", 0, 0, 1.0, 0.05, 0.08)
        pruner = prune_model(model, random_ids(6, 16), table, cfg, progress=False, execution=execution)
        if execution["dense_store"] == "disk":
            assert pruner.checkpoints.store.on_disk and pruner.peak_terms["checkpoints"] == 0
        pruner.close()
        results.append(([r.to_dict() for r in pruner.removed], model.state_dict()))
    (a, wa), (b, wb) = results
    assert a == b and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not any(tmp_path.iterdir())  # close() removed the spill files


@pytest.mark.parametrize("tokens", [4, 40])
def test_ridge_on_the_diagonal_gives_the_old_solution(tokens):
    """The solve's ridge is added to a copy's diagonal (memory): the same bits as adding a scaled identity."""
    from sprint.methods.tuning import RIDGES, solve_normal_equations

    z = torch.randn(tokens, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(tokens))
    gram, rhs = z.T @ z, z.T @ torch.randn(tokens, 6, dtype=torch.float64)
    x, gx, lam = solve_normal_equations(gram, rhs, singular=tokens < 24)
    scale = gram.diagonal().mean().clamp_min(1e-30)
    ridge = lam / scale.item() if lam else 0.0
    ridge = min(RIDGES, key=lambda r: abs(r - ridge))
    g = gram + (ridge * scale) * torch.eye(24, dtype=torch.float64) if ridge else gram
    old = torch.cholesky_solve(rhs, torch.linalg.cholesky(g))
    assert torch.equal(x, old) and torch.equal(gx, g @ old)


def test_fewer_statistics_held_under_a_budget_change_no_number(monkeypatch):
    """max_stats (what a tight --host-memory chooses): at most that many Gram statistics alive at once, the same
    removals and weights, a few more walks."""
    import sprint.methods.sprint as sprint_module
    from sprint.methods import tuning

    monkeypatch.setattr(sprint_module, "HELD_BYTES", 0)  # every β-best candidate gets its statistics at once
    results, walk = [], SprintPruner._walk
    for execution in ({}, {"max_stats": 1}):
        walks = []
        monkeypatch.setattr(SprintPruner, "_walk", lambda self, t, tuned, **kw: walks.append(tuned) or walk(self, t,
                                                                                                       tuned, **kw))
        tuning.LIVE["peak"] = tuning.LIVE["now"] = 0
        model = tiny_model("llama", layers=5)
        cfg = PruneConfig(method="sprint", target_speedup=1.45, alpha=3, beta=3)
        table = LatencyTable("t", "t", 0, 0, 1.0, 0.05, 0.08)
        pruner = prune_model(model, random_ids(), table, cfg, progress=False, execution=execution)
        results.append(([r.to_dict() for r in pruner.removed], model.state_dict(), tuning.LIVE["peak"], walks))
    (a, wa, peak_a, walks_a), (b, wb, peak_b, walks_b) = results
    assert a == b and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert peak_b == 1 < peak_a
    assert walks_b.count(True) > walks_a.count(True)  # the candidates over the budget were re-walked, tuned


def test_a_tight_host_budget_holds_fewer_statistics_in_the_plan():
    cfg = PruneConfig(method="sprint", target_speedup=1.5)
    free = planning.plan_run(shapes("8b"), 128, 2048, cfg, device="cuda", dtype="bfloat16", host_memory=1)
    assert "checkpoints" in free.disk  # over budget, the checkpoints go to disk first
    assert free.counts["stats_at_once"] == 6 and "re-walks" not in free.counts
    one = free.host["gram statistics"] // 6
    budget = free.host_peak - 2 * one - one // 2  # room for 3 fewer statistics, not 2
    fitted = planning.plan_within(shapes("8b"), 128, 2048, cfg, device="cuda", dtype="bfloat16", host_memory=budget)
    assert fitted.host_peak <= budget and fitted.counts["max_stats"] == 3 and fitted.counts["re-walks"] == 3
    assert fitted.step_s["re-walks"] > 0 and fitted.step_time > free.step_time
    assert any("Gram statistics held at once cut to 3" in n for n in fitted.notes)
    with pytest.raises(SprintError, match="--host-memory"):  # even one at a time does not fit
        planning.plan_within(shapes("8b"), 128, 2048, cfg, device="cuda", dtype="bfloat16",
                             host_memory=free.host_peak - 6 * one).check(host_memory=free.host_peak - 6 * one)


def test_the_factorisation_is_timed_at_its_own_width_and_scales_only_its_term(monkeypatch):
    """The Cholesky's throughput grows with the width (26 -> 47 GFLOP/s from 2048 to 14336 on one thread here), so
    the benchmark times it apart, at min(I, FACTOR_WIDTH), and the plan divides only the I³/3 term by it."""
    cfg = PruneConfig(method="sprint", target_speedup=1.5, tune_ratio=0.01)
    tp = planning.Throughput.given(1e12, solve=4e10)
    slow = planning.plan_run(shapes("8b"), 2, 256, cfg, throughput=tp)
    fast = planning.plan_run(shapes("8b"), 2, 256, cfg, throughput=dataclasses.replace(tp, factor=8e10))
    I, tunings, attempts = 14336, slow.counts["tunings"], slow.counts["solve_attempts"]
    assert attempts == 3  # 512 tokens < I: the ridges are tried in turn
    assert slow.step_s["solve"] - fast.step_s["solve"] == pytest.approx(tunings * attempts * I**3 / 3 / 8e10)
    calls = []
    real = planning._time_factorisation
    monkeypatch.setattr(planning, "_time_factorisation", lambda n, clock="wall": calls.append(n) or real(n, clock))
    measured = planning.benchmark(planning.shapes_from_config(tiny_model().config), seq_len=16)
    assert calls == [tiny_model().config.intermediate_size] and measured.factor > 0
    assert measured.factor_rate == measured.factor


def test_a_failed_factorisation_counts_only_the_columns_it_reached():
    """The plan assumes each tried factorisation runs to the end; the check counts what the data took: a Cholesky that
    meets a non-positive pivot at column j + 1 did (n³ − (n − j)³) / 3 FLOPs."""
    from sprint.methods import tuning

    gram = torch.eye(6, dtype=torch.float64)
    gram[2, 2] = -1.0  # the third leading minor is not positive: two columns done, whatever the ridge up to 1e-3
    before = dict(tuning.LIVE)
    with pytest.raises(FloatingPointError):
        tuning.solve_normal_equations(gram, torch.ones(6, 1, dtype=torch.float64), singular=True)
    tried = tuning.LIVE["factorizations"] - before["factorizations"]
    assert tried == len(tuning.RIDGES) - 1
    assert tuning.LIVE["factor_flops"] - before["factor_flops"] == pytest.approx(tried * (6**3 - 4**3) / 3)
    tuning.solve_normal_equations(torch.eye(6, dtype=torch.float64), torch.ones(6, 1, dtype=torch.float64))
    assert tuning.LIVE["factor_flops"] - before["factor_flops"] == pytest.approx(tried * (6**3 - 4**3) / 3 + 6**3 / 3)
