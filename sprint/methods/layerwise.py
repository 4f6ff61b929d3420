"""Layer-wise weight pruning on calibration activations: the loop Wanda and SparseGPT share.

Decoder layers are pruned in order, bottom up.  For layer l, the calibration activations X (the embeddings passed
through layers 0..l-1 *as already pruned*) run through l's attention and MLP sublayers while forward pre-hooks on
every linear layer of both accumulate statistics of its input (a :class:`Stats` per linear); then every linear of
layer l is pruned from its statistics, and X is recomputed through the pruned layer for layer l + 1.  This is the
sequential scheme of both papers' code (one layer's linears from one pass of the dense layer, layers in order).
The embeddings, the final norm and the LM head are never pruned.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from sprint.methods.base import OneShotPruner
from sprint.model.sublayers import SublayerView, sublayer_index, sublayer_name


class Stats:
    """Running statistics of a linear layer's inputs x [tokens, in]: the squared norm of every input feature over
    the calibration tokens (Wanda's ‖X_j‖₂²) and, with ``gram``, the Gram matrix XᵀX (SparseGPT's H / 2)."""

    def __init__(self, in_features: int, gram: bool = False):
        self.sq_norm = torch.zeros(in_features, dtype=torch.float64)
        self.gram = torch.zeros(in_features, in_features, dtype=torch.float64) if gram else None

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).to(torch.float64).cpu()
        self.sq_norm += (x * x).sum(0)
        if self.gram is not None:
            self.gram += x.T @ x


def linears(view: SublayerView, s: int) -> dict[str, nn.Linear]:
    """The linear layers of sublayer ``s``'s branch (q/k/v/o projections, or gate/up/down), by their names in the
    model (``model.layers.3.self_attn.q_proj``)."""
    layer, kind = sublayer_name(s)
    prefix = f"{view.adapter.layers}.{layer}.{view.adapter.module(kind)}"
    return {f"{prefix}.{name}": m for name, m in view._module(s, "branch").named_modules() if isinstance(m, nn.Linear)}


@torch.inference_mode()
def prune_layerwise(view: SublayerView, calibration: torch.Tensor, prune: Callable[[str, nn.Linear, Stats], None],
                    gram: bool = False, progress: bool = True) -> None:
    """Prune every linear layer of every decoder layer in place: ``prune(name, linear, stats)`` per linear, layer by
    layer from the bottom, each from the statistics of its inputs under the layers pruned below it."""
    X = view.embed(calibration)
    for layer in tqdm(range(view.num_layers), desc="layers", unit="layer", disable=not progress):
        subs = [sublayer_index(layer, "attn"), sublayer_index(layer, "mlp")]
        # offload (sprint.model.offload): the layer's weights on the device while it is pruned, the edits kept
        with view.resident(subs[0], write=True), view.resident(subs[1], write=True):
            targets = {name: m for s in subs for name, m in linears(view, s).items()}
            stats = {key: Stats(m.in_features, gram) for key, m in targets.items()}
            hooks = [m.register_forward_pre_hook(lambda mod, args, st=stats[key]: st.add(args[0]))
                     for key, m in targets.items()]
            try:
                Y = X
                for s in subs:
                    Y = view.apply(s, Y)
            finally:
                for h in hooks:
                    h.remove()
            for key, m in targets.items():
                prune(key, m, stats[key])
            for s in subs:
                X = view.apply(s, X)


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """"unstructured" -> None; "N:M" (e.g. "2:4": N of every M consecutive weights of a row are kept) -> (N, M)."""
    if pattern == "unstructured":
        return None
    try:
        n, m = (int(v) for v in pattern.split(":"))
    except ValueError:
        raise ValueError(f"sparsity pattern {pattern!r}: expected 'unstructured' or N:M such as 2:4") from None
    if not 0 < n < m:
        raise ValueError(f"sparsity pattern {pattern!r}: need 0 < N < M")
    return n, m


def lowest_mask(scores: torch.Tensor, sparsity: float, pattern: str) -> torch.Tensor:
    """Which weights to prune (True) given their scores [out, in]: unstructured, the ``sparsity`` share of lowest
    scores of every row; N:M, the M - N lowest of every M consecutive scores of a row (``sparsity`` is then M-N / M)."""
    rows, cols = scores.shape
    nm = parse_pattern(pattern)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if nm is None:
        k = int(cols * sparsity)
        if k:
            mask.scatter_(1, scores.topk(k, dim=1, largest=False).indices, True)
        return mask
    n, m = nm
    if cols % m:
        raise ValueError(f"{pattern} sparsity needs the input width ({cols}) to be a multiple of {m}")
    groups = scores.reshape(rows, cols // m, m)
    drop = groups.topk(m - n, dim=2, largest=False).indices
    return mask.reshape(rows, cols // m, m).scatter_(2, drop, True).reshape(rows, cols)


class WeightPruner(OneShotPruner):
    """A method of kind "weights" (:mod:`sprint.methods`): ``run()`` zeroes weights inside every decoder linear of
    ``view.model`` in one shot and returns each linear's share of zeros.  Subclasses implement :meth:`prune`."""

    options = ("sparsity", "pattern")
    supports_offload = True  # one layer at a time through the view (prune_layerwise keeps its edits)

    def __init__(self, view: SublayerView, calibration: torch.Tensor, sparsity: float = 0.5,
                 pattern: str = "unstructured", progress: bool = True):
        parse_pattern(pattern)
        super().__init__(view, calibration, progress)
        self.sparsity, self.pattern = sparsity, pattern
        self.zeros: dict[str, float] = {}

    def prune(self) -> dict[str, float]:
        raise NotImplementedError

    def run(self) -> dict[str, float]:
        self.zeros = self.prune()
        return self.zeros

    def record(self) -> dict:
        """What pruning.json says about the result: the share of zeros reached, the pattern, each linear's zeros."""
        return {"sparsity": self.sparsity_reached(), "pattern": self.pattern, "zeros": self.zeros}

    def sparsity_reached(self) -> float:
        """The share of zeros over all pruned linears' weights."""
        total = {name: m.weight.numel() for s in range(self.view.num_sublayers) for name, m in linears(self.view, s).items()}
        return sum(self.zeros[n] * total[n] for n in self.zeros) / sum(total[n] for n in self.zeros)
