"""Resumable pruning (issue 26): a run stopped after k removals and resumed from its journal ends exactly where an
uninterrupted run does: same removals, same tuned rows, bit for bit; a real ``kill -9`` of ``sprint prune`` too."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import random_ids
from sprint.measure.table import LatencyTable
from sprint.methods.driver import PruneConfig, prune_model
from sprint.methods.journal import Journal, journal_dir
from sprint.model.tiny import tiny_model

TABLE = LatencyTable("test", "tiny", 0, 0, dense_s=1.0, t_attn_s=0.05, t_mlp_s=0.08)


class Stop(Exception):
    pass


def state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def run(cfg, journal=None, stop_after=None, layers=4, **kw):
    model = tiny_model("llama", layers=layers)
    ids = random_ids(6, 16)

    def on_step(pruner, step_s, elapsed):
        if stop_after is not None and step_s is not None and len(pruner.removed) >= stop_after:
            raise Stop

    try:
        pruner = prune_model(model, ids, TABLE, cfg, progress=False, on_step=on_step, journal=journal, **kw)
    except Stop:
        return None, None
    return [r.to_dict() for r in pruner.removed], state(model)


@pytest.mark.parametrize("method,extra", [
    ("sprint", {}), ("sprint", {"reference": "current", "distance": "l1"}), ("sprint", {"alpha": 3, "beta": 2}),
    ("sprint-t", {}), ("sprint-e", {}), ("shortgpt", {}), ("blockpruner", {}),
])
def test_resumed_run_is_identical(tmp_path, method, extra):
    cfg = PruneConfig(method=method, target_speedup=1.5, **extra)
    removed, weights = run(cfg)
    assert len(removed) >= 4
    ident = {"method": method, **extra}
    for k in (1, 3):
        journal = Journal(tmp_path / f"j{k}", ident)
        assert run(cfg, journal, stop_after=k) == (None, None)
        assert 1 <= len(journal.steps()) <= k
        again, weights_again = run(cfg, Journal(tmp_path / f"j{k}", ident))
        assert again == removed
        assert weights_again.keys() == weights.keys()
        assert all(torch.equal(weights_again[n], weights[n]) for n in weights)


def test_a_journal_of_another_run_is_discarded(tmp_path):
    cfg = PruneConfig(method="sprint", target_speedup=1.5)
    assert run(cfg, Journal(tmp_path / "j", {"seed": 0}), stop_after=2) == (None, None)
    fresh = Journal(tmp_path / "j", {"seed": 1})
    assert fresh.steps() == [] and not (tmp_path / "j").exists()


KILLABLE = """
import sys, time
from sprint.methods import journal
from sprint.pipeline.cli import main
k = int(sys.argv.pop(1))
append = journal.Journal.append
def slow_append(self, index, step):
    path = append(self, index, step)
    if index == k - 1:
        time.sleep(120)  # the parent kill -9s us here, after step k is journaled
    return path
journal.Journal.append = slow_append
sys.exit(main(sys.argv[1:]))
"""


def digest(folder) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.parametrize("where", ["beside", "outside"])
def test_kill_9_then_rerun_resumes_with_an_identical_result(tmp_path, tiny_model_dir, where):
    """``sprint prune`` killed (SIGKILL) right after its k-th journaled removal; the same command rerun resumes from
    removal k + 1 (it says so) and writes the checkpoint an uninterrupted run writes, byte for byte.  "outside": the
    journal in its own folder (``--journal``) and the killed job's outputs deleted before the rerun, as Snakemake
    does, after the first target's checkpoint was written: the rerun replays up to where that target was reached,
    saves it from that state, and recomputes the rest identically."""
    model = tiny_model_dir("llama", layers=6)
    calib = tmp_path / "calib.pt"
    torch.save(random_ids(8, 24), calib)
    latency = tmp_path / "latency.json"
    latency.write_text(json.dumps({"dense_s": 1.0, "t_attn_s": 0.03, "t_mlp_s": 0.05}))
    env = {**os.environ, "SPRINT_MLFLOW": "0", "HF_HUB_OFFLINE": "1"}

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    folder = journal_dir(resumed / "x1.6") if where == "beside" else tmp_path / "journal"

    def args(out, journal=False):
        return ["prune", "--model", model, "--calibration", calib, "--latency", latency, "--method", "sprint",
                "--target-speedup", 1.3, 1.6, "--device", "cpu", "--output", out / "x1.3", out / "x1.6",
                *(["--journal", folder] if journal and where == "outside" else [])]

    subprocess.run([sys.executable, "-m", "sprint", *map(str, args(whole))], check=True, env=env, capture_output=True)
    first = len(json.loads((whole / "x1.3" / "pruning.json").read_text())["removed"])
    k = 3 if where == "beside" else first + 1
    assert k < len(json.loads((whole / "x1.6" / "pruning.json").read_text())["removed"])
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(k), *map(str, args(resumed, True))], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step = folder / f"step-{k - 1:04d}.pt"
    deadline = time.time() + 300
    while not step.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert len(list(folder.glob("step-*.pt"))) == k
    if where == "outside":
        assert (resumed / "x1.3" / "pruning.json").is_file()
        shutil.rmtree(resumed)
    again = subprocess.run([sys.executable, "-m", "sprint", *map(str, args(resumed, True))], env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed after {k if where == 'beside' else first} journaled steps" in again.stderr
    for target in ("x1.3", "x1.6"):
        a, b = (json.loads((d / target / "pruning.json").read_text()) for d in (whole, resumed))
        assert a["removed"] == b["removed"]
        assert digest(whole / target) == digest(resumed / target)
    assert not folder.exists()  # removed once every checkpoint is written
