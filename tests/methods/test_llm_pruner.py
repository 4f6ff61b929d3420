"""LLM-Pruner on tiny random models: its first-order importance ranks MLP channels and heads like the loss increase
of actually removing each one; pruning keeps valid GQA layers; the checkpoint carries every layer's shape, loads
with from_pretrained(trust_remote_code=True) and generates."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from sprint.model.checkpoint import load_pruned
from sprint.methods.llm_pruner import calibration_gradients, group_scores, prune_structures
from sprint.model.sublayers import SublayerView
from sprint.model.tiny import tiny_model

from helpers import random_ids

ENV = {**os.environ, "SPRINT_MLFLOW": "0", "HF_HUB_OFFLINE": "1"}


def _loss(model, ids) -> float:
    with torch.no_grad():
        logits = model(ids).logits
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).item()


def _ranks(x: torch.Tensor) -> torch.Tensor:
    return torch.argsort(torch.argsort(x)).double()


def _zeroed(model, ids, weights_and_index) -> float:
    """The loss with the given slices zeroed (restored afterwards)."""
    saved = [(w, index, w[index].clone()) for w, index in weights_and_index]
    with torch.no_grad():
        for w, index, _ in saved:
            w[index] = 0
        loss = _loss(model, ids)
        for w, index, old in saved:
            w[index] = old
    return loss


def test_importance_ranks_groups_like_their_removal():
    """Brute force: the loss increase of zeroing each MLP channel (gate row, up row, down column) and each query head
    (q rows, o columns) of a middle layer; the vector-wise first-order importance |Σ w·∂L/∂w| ranks them alike."""
    model, ids = tiny_model("llama", layers=3, weight_std=None), random_ids(16, low=4, high=96)
    view = SublayerView(model, batch_size=8)
    calibration_gradients(model, ids, 8, progress=False)
    head_scores, channel_scores = group_scores(view, 1, "vector")
    base = _loss(model, ids)
    mlp, attn = model.model.layers[1].mlp, model.model.layers[1].self_attn
    channels = torch.tensor([_zeroed(model, ids, [(mlp.gate_proj.weight, c), (mlp.up_proj.weight, c),
                                                  (mlp.down_proj.weight, (slice(None), c))]) - base
                             for c in range(mlp.down_proj.in_features)], dtype=torch.float64)
    rho = torch.corrcoef(torch.stack([_ranks(channel_scores), _ranks(channels.abs())]))[0, 1]
    assert rho > 0.95, rho  # 0.997 when written
    hd = attn.head_dim
    heads = torch.tensor([_zeroed(model, ids, [(attn.q_proj.weight, slice(h * hd, (h + 1) * hd)),
                                               (attn.o_proj.weight, (slice(None), slice(h * hd, (h + 1) * hd)))]) - base
                          for h in range(attn.q_proj.out_features // hd)], dtype=torch.float64)
    assert torch.equal(torch.argsort(head_scores), torch.argsort(heads.abs()))
    element_heads, element_channels = group_scores(view, 1, "element")  # an upper bound of each |first-order term|
    assert torch.all(element_channels >= channel_scores - 1e-12) and torch.all(element_heads >= head_scores - 1e-12)


def test_pruning_keeps_valid_gqa_layers_and_nothing_outside_the_range():
    dense, model, ids = tiny_model("qwen2", layers=6, weight_std=None), tiny_model("qwen2", layers=6, weight_std=None), random_ids(8, low=4, high=96)
    assert prune_structures(SublayerView(model, batch_size=4), ids, 0.0, first_layer=1, keep_last=1,
                            progress=False) == [[2, 64]] * 6
    torch.testing.assert_close(model(ids).logits, dense(ids).logits)  # nothing pruned: the same function
    shapes = prune_structures(SublayerView(model, batch_size=4), ids, 0.5, first_layer=1, keep_last=1, progress=False)
    assert shapes == [[2, 64]] + [[1, 32]] * 4 + [[2, 64]]  # 4 query heads in 2 KV groups: one of each group stays
    attn = model.model.layers[2].self_attn
    assert attn.q_proj.weight.shape == (2 * 8, 32) and attn.q_proj.bias.shape == (16,) and attn.num_key_value_groups == 1
    assert model.config.sprint_layer_shapes == shapes
    out = model(ids).logits
    assert out.shape == dense(ids).logits.shape and torch.isfinite(out).all()


def test_a_structured_checkpoint_loads_and_generates(tmp_path, tiny_model_dir):
    model = tiny_model_dir("llama", layers=8)  # layers 4 and 5 are pruned (4 to L-3, as LLM-Pruner's scripts)
    calib = tmp_path / "calib.pt"
    torch.save(random_ids(8, low=4, high=96), calib)
    out = tmp_path / "structured"
    proc = subprocess.run([sys.executable, "-m", "sprint", "prune", "--model", str(model), "--calibration", str(calib),
                           "--method", "llm-pruner", "--structured-ratio", "0.5", "--device", "cpu", "--output",
                           str(out)], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "pruning.json").read_text())
    assert record["point"] == "c50" and record["importance"] == "element" and record["target_speedup"] is None
    assert record["layer_shapes"] == [[2, 64]] * 4 + [[1, 32]] * 2 + [[2, 64]] * 2
    assert record["params_after"] < record["params_before"]
    net = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    loaded, _ = load_pruned(out)
    ids = random_ids(low=4, high=96, n=2, seed=3)[:, :8]
    with torch.no_grad():
        torch.testing.assert_close(net(ids).logits, loaded(ids).logits)
    assert net.model.layers[4].mlp.down_proj.in_features == 32 and net.model.layers[3].mlp.down_proj.in_features == 64
    assert net.generate(ids[:1], max_new_tokens=4, do_sample=False).shape == (1, 12)
