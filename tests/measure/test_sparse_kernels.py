"""Timing 2:4-sparse models with semi-structured sparse kernels (sprint.measure.sparse_kernels): which linears qualify, what
happens where the kernels do not run (every CPU), and, on a CUDA GPU of compute capability 8.0+, that the converted
model computes what the stored one does."""

from __future__ import annotations

import pytest
import torch

from sprint.errors import SprintError
from sprint.measure.protocol import Protocol
from sprint.measure.sparse_kernels import is_two_four, two_four_linears, use_sparse_kernels
from sprint.model.sublayers import SublayerView
from sprint.model.tiny import tiny_model
from sprint.methods.wanda import wanda_prune

SIZES = dict(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2, head_dim=32)


def _wanda(pattern: str, device: str = "cpu", dtype=torch.float32):
    model = tiny_model("llama", layers=2, **SIZES).to(device, dtype)
    ids = torch.randint(0, model.config.vocab_size, (8, 16), generator=torch.Generator().manual_seed(0)).to(device)
    wanda_prune(SublayerView(model, batch_size=4), ids, 0.5, pattern, progress=False)
    return model, ids


def test_two_four_means_at_most_two_nonzeros_in_every_four_along_a_row():
    w = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0]])
    assert is_two_four(w)
    assert not is_two_four(torch.tensor([[1.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0]]))  # 3 of the first 4
    assert not is_two_four(torch.ones(2, 6))  # rows not made of groups of 4


def test_a_wanda_2of4_model_has_every_decoder_linear_two_four_and_an_unstructured_one_none():
    model, _ = _wanda("2:4")
    found = two_four_linears(model)
    assert len(found) == 14  # q, k, v, o, gate, up, down in each of 2 layers; never the LM head
    assert model.get_output_embeddings() not in found.values()
    assert two_four_linears(_wanda("unstructured")[0]) == {}
    assert two_four_linears(tiny_model("llama", layers=2, **SIZES)) == {}


def test_on_a_cpu_a_two_four_model_is_timed_as_stored_and_says_why():
    model, ids = _wanda("2:4")
    with torch.no_grad():
        before = model(ids).logits
        record = use_sparse_kernels(model, "auto")
        after = model(ids).logits
    assert record == {"kernels": "dense", "sparse_linears": 0, "dense_linears": 14,
                      "reason": "PyTorch has 2:4 sparse kernels on CUDA only; this run is on cpu"}
    assert torch.equal(before, after)
    assert use_sparse_kernels(model, "dense")["reason"] == "sparse_kernels: dense"
    assert use_sparse_kernels(tiny_model("llama", layers=1), "auto") == {"kernels": "dense"}  # not 2:4: nothing said


def test_the_policy_is_checked_by_the_function_and_the_protocol():
    with pytest.raises(SprintError, match="sparse_kernels must be one of auto, dense"):
        use_sparse_kernels(tiny_model("llama", layers=1), "sparse")
    with pytest.raises(SprintError, match="sparse_kernels must be one of auto, dense"):
        Protocol(sparse_kernels="always").validate()


def _semi_structured_gpu() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)


@pytest.mark.skipif(not _semi_structured_gpu(), reason="needs a CUDA GPU of compute capability 8.0+")
def test_on_a_capable_gpu_the_sparse_kernels_compute_what_the_stored_model_does():
    model, ids = _wanda("2:4", device="cuda", dtype=torch.float16)
    with torch.no_grad():
        before = model(ids).logits.float()
        record = use_sparse_kernels(model, "auto")
        after = model(ids).logits.float()
    assert record["kernels"].startswith("semi-structured 2:4") and record["sparse_linears"] == 14, record
    assert torch.allclose(before, after, atol=2e-2, rtol=2e-2), (before - after).abs().max()
