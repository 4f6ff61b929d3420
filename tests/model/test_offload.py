"""Offloaded execution (sprint.model.offload): the same removal order and bit-identical pruned weights as without
offload, for SPRINT, the sublayer baselines and the layer-wise weight methods, with the weights in host memory or
read from the model's safetensors; edits persist into the saved checkpoint; unsupported methods fail in one line."""

import pytest
import torch
from safetensors.torch import load_file

from sprint.errors import SprintError
from sprint.measure.table import LatencyTable
from sprint.methods import PruneConfig
from sprint.methods.driver import offload_store, prune_model
from sprint.model.checkpoint import save_dense, save_pruned
from sprint.model.loading import load_model
from sprint.model.offload import SafetensorsSource, load_offloaded, resolve_store
from sprint.model.sublayers import SublayerView
from sprint.model.tiny import save_tiny_model

from helpers import random_ids

TABLE = LatencyTable("test", "tiny", 0, 0, dense_s=1.0, t_attn_s=0.05, t_mlp_s=0.08)
CASES = [
    ("sprint", 1.3, dict(beta=2, alpha=3)),
    ("sprint", 1.2, dict(beta=2, alpha=3, reference="current", distance="l1")),
    ("shortgpt", 1.3, {}),
    ("sleb", 1.2, {}),
    ("blockpruner", 1.2, {}),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("offload") / "tiny-llama", "llama", 4)


REFERENCE: dict = {}  # (method, target, options) -> the run without offload, shared by both stores


def run(path, method, target, store, **kw):
    if store is None:
        model, tok = load_model(str(path), "cpu", "float32")
    else:
        model, tok = load_offloaded(str(path), "cpu", "float32", store)
    pruner = prune_model(model, random_ids(), TABLE, PruneConfig(method=method, target_speedup=target, **kw),
                         progress=False)
    return model, tok, pruner


@pytest.mark.parametrize("store", ["memory", "file"])
@pytest.mark.parametrize("method,target,kw", CASES, ids=[c[0] + ("-l1" if "distance" in c[2] else "") for c in CASES])
def test_offloaded_pruning_is_bit_identical(model_dir, tmp_path, method, target, kw, store):
    """Removal records (importances and sensitivities to the last bit) and every saved tensor (torch.equal)."""
    path = model_dir
    key = (method, target, tuple(sorted(kw.items())))
    if key not in REFERENCE:
        dense, tok, ref = run(path, method, target, None, **kw)
        record = {"method": method, "removed": [r.to_dict() for r in ref.removed]}
        REFERENCE[key] = (ref.removed, load_file(save_pruned(dense, tok, tmp_path / "a", record) / "model.safetensors"))
    removed, a = REFERENCE[key]
    model, tok, off = run(path, method, target, store, **kw)
    assert [r.to_dict() for r in off.removed] == [r.to_dict() for r in removed]
    assert model.sprint_offload.loads > 0
    record = {"method": method, "removed": [r.to_dict() for r in off.removed]}
    b = load_file(save_pruned(model, tok, tmp_path / "b", record) / "model.safetensors")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    if method == "sprint":  # tuned rows were written, and persisted through the offload into the checkpoint
        original = load_file(path / "model.safetensors")
        tuned = [r.tuned_layer for r in off.removed if r.tuned_layer is not None]
        key = f"model.layers.{tuned[0]}.mlp.down_proj.weight"
        assert tuned and not torch.equal(b[key], original[key])


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_layerwise_weight_methods_run_offloaded(tiny_model_dir, tmp_path, method):
    path = tiny_model_dir("llama", layers=3)
    outs = []
    for store in (None, "file"):
        model, tok, _ = run(path, method, None, store, sparsity=0.5)
        outs.append(load_file(save_dense(model, tok, tmp_path / str(store), {}) / "model.safetensors"))
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])
    assert (outs[1]["model.layers.1.mlp.up_proj.weight"] == 0).float().mean() == 0.5


def test_file_store_holds_no_decoder_weight_between_sublayers(tiny_model_dir):
    """Outside a sublayer's evaluation its weights are meta placeholders; inside they are real, on the device;
    an edit without write is dropped, one with write is kept (and read back instead of the file)."""
    path = tiny_model_dir("llama", layers=2)
    model, _ = load_offloaded(str(path), "cpu", "float32", "file")
    view = SublayerView(model)
    down = view.down_proj(1)
    assert all(p.device.type == "meta" for n, p in model.named_parameters() if n.startswith("model.layers."))
    assert model.model.embed_tokens.weight.device.type == "cpu"
    source = SafetensorsSource(path)
    with view.resident(3):
        assert torch.equal(down.weight, source.read("model.layers.1.mlp.down_proj.weight"))
        with view.resident(3):  # nested: not loaded again
            loads = model.sprint_offload.loads
        down.weight[0] = 0  # not kept: no write
    assert model.sprint_offload.loads == loads and down.weight.device.type == "meta"
    view.write_rows(1, torch.tensor([1]), torch.full((1, down.weight.shape[1]), 7.0))
    with view.resident(3):
        assert down.weight[0].abs().sum() > 0 and torch.all(down.weight[1] == 7.0)


def test_offload_errors_are_one_line():
    with pytest.raises(SprintError, match="--offload does not support slicegpt"):
        offload_store("slicegpt", True, "cpu")
    with pytest.raises(SprintError, match="--offload 'disk'"):
        resolve_store("disk", "cpu")
    assert resolve_store(True, "cpu") == "file" and resolve_store(True, "cuda") == "memory"
    assert offload_store("sprint", None, "cpu") is None
