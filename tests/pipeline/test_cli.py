"""The command line end to end on a tiny model: calibrate -> prune (several targets) -> load; one-line errors."""

import json
import os
import subprocess
import sys

import pytest
import torch

from sprint.model.checkpoint import load_pruned

ENV = {**os.environ, "SPRINT_MLFLOW": "0", "HF_HUB_OFFLINE": "1"}


def sprint(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "sprint", *map(str, args)], capture_output=True, text=True, env=ENV)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


@pytest.fixture
def setup(tmp_path, tiny_model_dir):
    model = tiny_model_dir("qwen2", layers=4)
    text = tmp_path / "corpus.txt"
    text.write_text(" ".join(f"w{i % 60} {chr(97 + i % 26)}" for i in range(3000)))
    calib = tmp_path / "calib.pt"
    sprint("calibrate", "--model", model, "--source", text, "--n", 6, "--seq-len", 16, "--seed", 1, "--output", calib)
    latency = tmp_path / "latency.json"
    latency.write_text(json.dumps({"dense_s": 1.0, "t_attn_s": 0.05, "t_mlp_s": 0.08}))
    return model, calib, latency


def test_prune_several_targets_and_load(setup, tmp_path):
    model, calib, latency = setup
    tokens = torch.load(calib, weights_only=True)
    assert tokens.dtype == torch.long and tokens.shape == (6, 16)
    outs = [tmp_path / "x1.1", tmp_path / "x1.3"]
    sprint("prune", "--model", model, "--calibration", calib, "--latency", latency, "--method", "sprint",
           "--target-speedup", 1.1, 1.3, "--seed", 3, "--alpha", 2, "--beta", 2, "--device", "cpu", "--output", *outs)
    small, large = (json.loads((o / "pruning.json").read_text()) for o in outs)
    for rec, target in ((small, 1.1), (large, 1.3)):
        assert rec["method"] == "sprint" and rec["target_speedup"] == target
        assert rec["estimated_speedup"] >= target
        assert rec["params"]["seed"] == 3 and rec["params"]["alpha"] == 2 and rec["params"]["beta"] == 2
        assert rec["params"]["tune_ratio"] == 1.0 and rec["num_tunings"] > 0 and rec["wall_time_s"] > 0
        for r in rec["removed"]:
            assert set(r) - {"flip_ratio"} == {"layer", "kind", "importance", "sensitivity", "tuned_layer"}
            assert r.get("flip_ratio") is None or r["flip_ratio"] > 0  # SPRINT: where its pick would change type
    assert large["removed"][: len(small["removed"])] == small["removed"]  # one greedy run, two snapshots
    assert len(large["removed"]) > len(small["removed"])
    net, tok = load_pruned(outs[1])
    assert net.config.sprint_removed == [[r["layer"], r["kind"]] for r in sorted(large["removed"], key=lambda r: (r["layer"], r["kind"]))]


@pytest.mark.parametrize("case", ["unreachable", "implausible", "method", "no-calib", "bad-calib", "no-latency", "bad-latency",
                                  "latency-key", "no-model"])
def test_one_line_errors(setup, tmp_path, case):
    model, calib, latency = setup
    args = dict(model=model, calibration=calib, latency=latency, method="sprint", target="1.2")
    expect = {
        "unreachable": "unreachable", "implausible": "cannot be true", "method": "invalid choice", "no-calib": "does not exist",
        "bad-calib": "calib", "no-latency": "does not exist", "bad-latency": "JSON",
        "latency-key": "t_mlp_s", "no-model": "does not exist",
    }[case]
    if case == "unreachable":
        args["target"] = "40"
    elif case == "implausible":  # 4 layers x (1 + 1.5) s = the whole 10 s: every sublayer gone, 0 s left
        (tmp_path / "implausible.json").write_text(json.dumps({"dense_s": 10, "t_attn_s": 1, "t_mlp_s": 1.5}))
        args["latency"] = tmp_path / "implausible.json"
    elif case == "method":
        args["method"] = "magic"
    elif case == "no-calib":
        args["calibration"] = tmp_path / "missing.pt"
    elif case == "bad-calib":
        bad = tmp_path / "bad.pt"
        torch.save(torch.zeros(3), bad)
        args["calibration"] = bad
    elif case == "no-latency":
        args["latency"] = tmp_path / "missing.json"
    elif case == "bad-latency":
        (tmp_path / "bad.json").write_text("{not json")
        args["latency"] = tmp_path / "bad.json"
    elif case == "latency-key":
        (tmp_path / "partial.json").write_text(json.dumps({"dense_s": 1.0, "t_attn_s": 0.1}))
        args["latency"] = tmp_path / "partial.json"
    elif case == "no-model":
        args["model"] = tmp_path / "nowhere"
    out = tmp_path / "out"
    proc = sprint("prune", "--model", args["model"], "--calibration", args["calibration"], "--latency",
                  args["latency"], "--method", args["method"], "--target-speedup", args["target"], "--output", out,
                  check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.strip().splitlines() if "error" in l.lower()]
    assert len(lines) == 1 and expect.lower() in lines[0].lower(), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


KILLED_SAVE = """
import os, signal, sys
import transformers
from sprint.pipeline.cli import main
# a hard kill in the middle of writing the checkpoint: weights written, tokenizer and pruning.json not yet
transformers.PreTrainedTokenizerBase.save_pretrained = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_save_loses_nothing_and_a_rerun_completes(setup, tmp_path):
    """Interrupted mid-write (SIGKILL, no clean-up possible): no output looks complete, an earlier one survives."""
    model, calib, latency = setup
    out = tmp_path / "pruned"
    args = ["prune", "--model", model, "--calibration", calib, "--latency", latency, "--method", "sprint",
            "--target-speedup", 1.2, "--device", "cpu", "--output", out]

    def killed(seed: int) -> None:
        cmd = [sys.executable, "-c", KILLED_SAVE, *map(str, args), "--seed", str(seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
        assert proc.returncode == -9, proc.stderr[-2000:]

    killed(seed=1)
    assert not out.exists()  # the half-written folder is a hidden temp sibling, never the output itself
    assert [p.name.startswith(".pruned.") and p.name.endswith(".tmp") for p in tmp_path.iterdir()
            if p.name.startswith(".pruned")] == [True]
    sprint(*args, "--seed", 2)
    first = json.loads((out / "pruning.json").read_text())
    assert first["params"]["seed"] == 2
    killed(seed=3)  # a rerun killed while replacing a finished checkpoint leaves that checkpoint intact
    assert json.loads((out / "pruning.json").read_text()) == first
    net, tok = load_pruned(out)
    assert tok is not None and net.config.sprint_removed


def test_weight_methods_write_ordinary_2_4_checkpoints(setup, tmp_path):
    """Wanda / SparseGPT: one dense-shaped checkpoint each that plain from_pretrained loads (no remote code) and that
    generates; every decoder linear is 2:4 sparse; a target speedup is refused in one line."""
    from transformers import AutoModelForCausalLM

    model, calib, _ = setup
    dense = AutoModelForCausalLM.from_pretrained(model)
    for method in ("wanda", "sparsegpt"):
        out = tmp_path / method
        sprint("prune", "--model", model, "--device", "cpu", "--calibration", calib, "--method", method,
               "--pattern", "2:4", "--output", out)
        assert not (out / "modeling_sprint.py").exists()
        record = json.loads((out / "pruning.json").read_text())
        assert record["method"] == method and record["target_speedup"] is None and record["pattern"] == "2:4"
        assert record["point"] == "2of4"
        assert record["sparsity"] == pytest.approx(0.5) and len(record["zeros"]) == 4 * 7
        net = AutoModelForCausalLM.from_pretrained(out)
        for name, w in net.state_dict().items():
            if ".layers." in name and name.endswith("proj.weight"):
                assert ((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) == 2).all(), (method, name)
            elif "norm" in name or "embed" in name or "lm_head" in name:
                assert torch.equal(w, dense.state_dict()[name]), (method, name)
        ids = torch.load(calib)[:1, :4]
        assert net.generate(ids, max_new_tokens=3, do_sample=False).shape == (1, 7)
    refused = sprint("prune", "--model", model, "--calibration", calib, "--method", "wanda", "--target-speedup", 1.2,
                     "--output", tmp_path / "no", check=False)
    assert refused.returncode == 2 and "takes no target speedup" in refused.stderr


def test_a_given_latency_table_is_checked_and_copied_not_measured(setup, tmp_path):
    """`sprint profile --table`: the copy says where it came from; a table that cannot be true for the model fails
    in one line and writes nothing."""
    model, _, latency = setup
    out = tmp_path / "copy.json"
    sprint("profile", "--model", model, "--table", latency, "--output", out)
    copy = json.loads(out.read_text())
    assert copy["dense_s"] == 1.0 and copy["t_attn_s"] == 0.05 and copy["given"]["path"] == str(latency)
    assert len(copy["given"]["sha256"]) == 64
    latency.write_text(json.dumps({"dense_s": 1.0, "t_attn_s": 0.1, "t_mlp_s": 0.2}))  # 4 x 0.3 s > 1 s
    bad = sprint("profile", "--model", model, "--table", latency, "--output", tmp_path / "bad.json", check=False)
    assert bad.returncode != 0 and "cannot be true" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad.json").exists()
