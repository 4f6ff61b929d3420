"""Wanda and SparseGPT (the paper's fine-grained baselines) against properties from their papers, on tiny models."""

from __future__ import annotations

import pytest
import torch

from sprint.methods.layerwise import Stats, linears, lowest_mask, parse_pattern
from sprint.methods.sparsegpt import sparsegpt_prune, sparsegpt_weights
from sprint.model.sublayers import SublayerView
from sprint.model.tiny import tiny_model
from sprint.methods.wanda import wanda_prune, wanda_scores


def _inputs(tokens: int = 512, width: int = 64, seed: int = 0) -> torch.Tensor:
    """Correlated inputs with features of very different scales, as LLM activations have (outlier features)."""
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(width, width, generator=gen, dtype=torch.float64)
    scale = torch.logspace(-1, 1, width, dtype=torch.float64)[torch.randperm(width, generator=gen)]
    return (torch.randn(tokens, width, generator=gen, dtype=torch.float64) @ mix) * scale


def _stats(X: torch.Tensor) -> Stats:
    st = Stats(X.shape[1], gram=True)
    st.add(X)
    return st


def test_a_2_4_mask_keeps_the_two_largest_wanda_scores_of_every_four():
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(16, 64, generator=gen, dtype=torch.float64)
    scores = wanda_scores(W, _stats(_inputs()).sq_norm)
    pruned = lowest_mask(scores, 0.5, "2:4")
    kept = ~pruned.reshape(16, 16, 4)
    assert (kept.sum(-1) == 2).all()  # exactly two non-zeros in every group of four
    groups = scores.reshape(16, 16, 4)
    assert (groups.masked_fill(~kept, float("inf")).amin(-1) >= groups.masked_fill(kept, float("-inf")).amax(-1)).all()


def test_unstructured_wanda_prunes_the_lowest_scores_of_every_row():
    gen = torch.Generator().manual_seed(2)
    W = torch.randn(8, 64, generator=gen, dtype=torch.float64)
    scores = wanda_scores(W, _stats(_inputs()).sq_norm)
    pruned = lowest_mask(scores, 0.5, "unstructured")
    assert (pruned.sum(1) == 32).all()  # per-output comparison group: half of every row
    for row in range(8):
        assert scores[row][pruned[row]].max() <= scores[row][~pruned[row]].min()
    # the activation norms matter: a weight with a larger |W| can go when its input feature is small
    assert not torch.equal(pruned, lowest_mask(W.abs(), 0.5, "unstructured"))


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_sparsegpt_reconstructs_the_layer_better_than_magnitude_pruning(pattern):
    """The paper's claim: at equal sparsity, the OBS update leaves a smaller layer-output error ‖XWᵀ - XŴᵀ‖ than
    zeroing the smallest weights (magnitude) or Wanda's choice without an update."""
    gen = torch.Generator().manual_seed(3)
    X = _inputs()
    W = torch.randn(32, 64, generator=gen, dtype=torch.float64)
    stats = _stats(X)
    ours = sparsegpt_weights(W, stats.gram, 0.5, pattern)
    magnitude = W.masked_fill(lowest_mask(W.abs(), 0.5, pattern), 0)
    wanda = W.masked_fill(lowest_mask(wanda_scores(W, stats.sq_norm), 0.5, pattern), 0)

    def error(V):
        return torch.linalg.norm(X @ W.T - X @ V.T).item()

    assert (ours == 0).double().mean().item() == pytest.approx(0.5, abs=1e-9)
    if pattern == "2:4":
        assert ((ours.reshape(32, 16, 4) != 0).sum(-1) == 2).all()
    assert error(ours) < error(wanda) < error(magnitude)


def test_sparsegpt_with_nothing_pruned_changes_nothing():
    W = torch.randn(8, 64, dtype=torch.float64)
    assert torch.allclose(sparsegpt_weights(W, _stats(_inputs()).gram, 0.0), W, atol=1e-10)


def test_patterns_are_checked():
    assert parse_pattern("2:4") == (2, 4) and parse_pattern("unstructured") is None
    for bad in ("4:2", "2-4", "dense"):
        with pytest.raises(ValueError, match="pattern"):
            parse_pattern(bad)


@pytest.mark.parametrize(("prune", "pattern"), [(wanda_prune, "unstructured"), (wanda_prune, "2:4"),
                                                (sparsegpt_prune, "unstructured"), (sparsegpt_prune, "2:4")])
def test_every_decoder_linear_is_pruned_and_nothing_else(prune, pattern):
    model = tiny_model("llama", layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    view = SublayerView(model, batch_size=4)
    ids = torch.randint(0, model.config.vocab_size, (8, 16), generator=torch.Generator().manual_seed(0))
    dense_nll = view.nll(_final(view, ids), ids)
    zeros = prune(view, ids, 0.5, pattern, progress=False)
    names = {n for s in range(view.num_sublayers) for n in linears(view, s)}
    assert set(zeros) == names and len(names) == 14  # q, k, v, o, gate, up, down in each of 2 layers
    assert all(share == pytest.approx(0.5, abs=0.02) for share in zeros.values()), zeros
    after = model.state_dict()
    for key, value in before.items():
        if not any(key.startswith(n) for n in names):
            assert torch.equal(after[key], value), key  # embeddings, norms, LM head untouched
    nll = view.nll(_final(view, ids), ids)
    assert torch.isfinite(torch.tensor(nll)) and nll != dense_nll


def _final(view: SublayerView, ids: torch.Tensor) -> torch.Tensor:
    X = view.embed(ids)
    for s in range(view.num_sublayers):
        X = view.apply(s, X)
    return X
