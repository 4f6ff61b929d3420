"""SliceGPT on tiny random models: the rotation alone is exact, the error grows with the slicing ratio, and a sliced
checkpoint is a smaller model that loads with from_pretrained(trust_remote_code=True) and generates."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from sprint.model.checkpoint import load_pruned
from sprint.methods.slicegpt import principal_components, slice_model, sliced_width
from sprint.model.sublayers import SublayerView
from sprint.model.tiny import save_tiny_model, tiny_model

from helpers import random_ids

ENV = {**os.environ, "SPRINT_MLFLOW": "0", "HF_HUB_OFFLINE": "1"}


def _model(family: str, tied: bool = False):
    model = tiny_model(family, layers=3, weight_std=None)
    if tied:  # SmolLM2 ties its LM head to its embeddings
        model.lm_head.weight = model.model.embed_tokens.weight
        model.config.tie_word_embeddings = True
    return model


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize(("family", "tied"), [("llama", True), ("qwen2", False), ("qwen3", False), ("mistral", False)])
def test_the_rotation_alone_computes_the_same_function(family, tied):
    """Slicing nothing: the folded norms and per-sublayer rotations (with their shortcut matrices) are exact, on
    tokens the PCA never saw (their Theorem 1)."""
    dense, model = _model(family, tied), _model(family, tied)
    assert slice_model(SublayerView(model, batch_size=4), random_ids(8, low=4, high=96), 0.0, progress=False) == 32
    held_out = random_ids(8, seed=1, low=4, high=96)
    torch.testing.assert_close(_logits(model, held_out), _logits(dense, held_out), atol=2e-5, rtol=1e-4)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()  # untied: rotated apart


def test_the_error_grows_with_the_slicing_ratio():
    dense, held_out = _model("llama"), random_ids(8, seed=1, low=4, high=96)
    reference = _logits(dense, held_out)
    errors = []
    for slicing in (0.1, 0.25, 0.5, 0.75):
        model = _model("llama")
        width = slice_model(SublayerView(model, batch_size=4), random_ids(8, low=4, high=96), slicing, progress=False)
        assert width == sliced_width(32, slicing) and model.model.embed_tokens.weight.shape == (96, width)
        errors.append((_logits(model, held_out) - reference).pow(2).mean().item())
    assert errors == sorted(errors) and errors[0] > 0, errors


def test_principal_components_are_orthonormal_and_by_decreasing_variance():
    X = torch.randn(4, 50, 6, generator=torch.Generator().manual_seed(0)) * torch.tensor([1, 5, 2, 9, 3, 0.5])
    Q = principal_components(X)
    torch.testing.assert_close(Q.T @ Q, torch.eye(6, dtype=torch.float64))
    variance = ((X.reshape(-1, 6).double() @ Q) ** 2).sum(0)
    assert torch.all(variance[:-1] >= variance[1:])


def test_a_sliced_checkpoint_is_smaller_loads_and_generates(tmp_path):
    """With 3 heads, the sliced width (32 of 48) is not a multiple of the heads, as SmolLM2's 400 of 576 with 9 heads
    at 30%: transformers refuses such a hidden_size, so the checkpoint keeps hidden_size and records the width."""
    model = save_tiny_model(tmp_path / "tiny", "llama", 3, hidden_size=48, num_attention_heads=3,
                            num_key_value_heads=1, head_dim=16)
    calib = tmp_path / "calib.pt"
    torch.save(random_ids(8, low=4, high=96), calib)
    out = tmp_path / "sliced"
    proc = subprocess.run([sys.executable, "-m", "sprint", "prune", "--model", str(model), "--calibration", str(calib),
                           "--method", "slicegpt", "--slicing", "0.25", "--device", "cpu", "--output", str(out)],
                          capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "pruning.json").read_text())
    assert record["method"] == "slicegpt" and record["point"] == "s25" and record["target_speedup"] is None
    assert record["hidden_size"] == 48 and record["sliced_hidden_size"] == 32 and record["removed"] == []
    net = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    dense = AutoModelForCausalLM.from_pretrained(model)
    assert net.config.sprint_residual_width == 32 and net.config.hidden_size == 48 and net.config.head_dim == 16
    assert net.get_input_embeddings().embedding_dim == 32 and net.get_output_embeddings().in_features == 32
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in dense.parameters())
    ids = random_ids(8, seed=2, low=4, high=96)[:2, :8]
    loaded, _ = load_pruned(out)
    torch.testing.assert_close(_logits(net, ids), _logits(loaded, ids))
    assert net.generate(ids[:1], max_new_tokens=4, do_sample=False).shape == (1, 12)
    refused = subprocess.run([sys.executable, "-m", "sprint", "prune", "--model", str(model), "--calibration",
                              str(calib), "--method", "slicegpt", "--target-speedup", "1.2", "--output",
                              str(tmp_path / "no")], capture_output=True, text=True, env=ENV)
    assert refused.returncode == 2 and "takes no target speedup: it prunes once at --slicing" in refused.stderr
