"""LLM-Pruner: dependency-aware structured pruning with first-order importance (Ma, Fang & Wang, NeurIPS 2023), as a
baseline of the paper's Fig. 5, without the optional LoRA recovery (SPRINT does no fine-tuning either).

Paper -> code:

- coupled structures (their §3.1, the dependency graph of a Llama layer): an attention group is one query head, the
  rows of q_proj that compute it and the columns of o_proj that read it (under grouped-query attention the K/V
  heads are shared by several query heads and kept; every KV group loses the same number of query heads, so the
  layer stays a valid GQA layer); an MLP group is one channel, a row of gate_proj and of up_proj and a column of
  down_proj (:func:`group_scores`);
- importance (their §3.2, Eq. 4–6): first-order Taylor terms of the calibration loss L (next-token cross-entropy on
  the calibration windows): per weight |w · ∂L/∂w| summed over the group (``element``, their element-wise
  "param_first", the default), or |Σ w · ∂L/∂w| over the group (``vector``, their vector-wise importance);
- block-wise pruning (their Llama setting): only layers [``first_layer``, L − ``keep_last``) are pruned (their
  scripts: 4 to L − 2), each by the same ratio: round(ratio · query heads per KV group) heads of every KV group and
  round(ratio · intermediate) MLP channels, the least important ones;
- no recovery fine-tuning.

The pruned model is a SPRINT checkpoint whose ``config.sprint_layer_shapes`` lists every layer's query heads per KV
group and MLP width; the carried modeling code (:mod:`sprint.model.modeling_sprint`) builds those shapes.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from sprint.model.modeling_sprint import layer_shapes, set_layer_shapes
from sprint.methods.base import OneShotPruner
from sprint.model.sublayers import SublayerView

IMPORTANCE = ("element", "vector")


def calibration_gradients(model: nn.Module, calibration: torch.Tensor, batch_size: int = 8,
                          progress: bool = True) -> None:
    """Accumulate ∂L/∂w of the mean next-token loss over ``calibration`` [n, T] into every parameter's ``.grad``."""
    model.zero_grad(set_to_none=True)
    params = [p for p in model.parameters()]
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    n = calibration.shape[0]
    device = model.get_input_embeddings().weight.device
    try:
        with torch.enable_grad():
            for i in tqdm(range(0, n, batch_size), desc="gradients", unit="batch", disable=not progress):
                ids = calibration[i:i + batch_size].to(device)
                logits = model(input_ids=ids, use_cache=False).logits
                loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                                   ids[:, 1:].reshape(-1), reduction="sum") / (n * (ids.shape[1] - 1))
                loss.backward()
    finally:
        for p, s in zip(params, saved):
            p.requires_grad_(s)


def _products(weight: torch.Tensor, dim: int, groups: int) -> torch.Tensor:
    """w · ∂L/∂w of ``weight`` split along ``dim`` into ``groups`` equal slices: [groups, slice size] (float64)."""
    wg = weight.detach().to(torch.float64) * weight.grad.to(torch.float64)
    return wg.movedim(dim, 0).reshape(groups, -1)


def group_scores(view: SublayerView, layer: int, importance: str = "element") -> tuple[torch.Tensor, torch.Tensor]:
    """(query-head scores [heads], MLP-channel scores [intermediate]) of decoder layer ``layer`` from the gradients
    :func:`calibration_gradients` left in ``.grad``: Σ|w·g| over each group (element) or |Σ w·g| (vector)."""
    if importance not in IMPORTANCE:
        raise ValueError(f"importance must be one of {IMPORTANCE}, got {importance!r}")
    ad, lay = view.adapter, view.layers[layer]
    attn, mlp = getattr(lay, ad.attn), getattr(lay, ad.mlp)
    heads = attn.q_proj.out_features // attn.head_dim
    channels = mlp.down_proj.in_features
    head_parts = [_products(attn.q_proj.weight, 0, heads), _products(attn.o_proj.weight, 1, heads)]
    if attn.q_proj.bias is not None:
        head_parts.append(_products(attn.q_proj.bias, 0, heads))
    channel_parts = [_products(mlp.gate_proj.weight, 0, channels), _products(mlp.up_proj.weight, 0, channels),
                     _products(mlp.down_proj.weight, 1, channels)]

    def score(parts: list[torch.Tensor]) -> torch.Tensor:
        if importance == "element":
            return sum(p.abs().sum(1) for p in parts)
        return sum(p.sum(1) for p in parts).abs()

    return score(head_parts), score(channel_parts)


def kept(head_scores: torch.Tensor, channel_scores: torch.Tensor, kv_heads: int, ratio: float) -> tuple[list, list]:
    """(query heads kept, channels kept), ascending: the round(ratio·per group) least important query heads of every
    KV group and the round(ratio·width) least important channels go."""
    per_group = head_scores.numel() // kv_heads
    drop_heads = round(ratio * per_group)
    heads = []
    for g in range(kv_heads):
        block = head_scores[g * per_group:(g + 1) * per_group]
        order = torch.argsort(block, descending=True)[: per_group - drop_heads]
        heads += sorted(g * per_group + int(i) for i in order)
    drop = round(ratio * channel_scores.numel())
    channels = sorted(int(i) for i in torch.argsort(channel_scores, descending=True)[: channel_scores.numel() - drop])
    return heads, channels


@torch.no_grad()
def _keep(linear: nn.Linear, index: torch.Tensor, dim: int) -> None:
    """Keep only ``index`` along ``dim`` of ``linear`` (0: output rows, 1: input columns)."""
    weight = linear.weight.index_select(dim, index.to(linear.weight.device))
    linear.weight = nn.Parameter(weight.contiguous(), requires_grad=False)
    if dim == 0 and linear.bias is not None:
        linear.bias = nn.Parameter(linear.bias.index_select(0, index.to(linear.bias.device)).contiguous(),
                                   requires_grad=False)
    linear.out_features, linear.in_features = linear.weight.shape


def prune_structures(view: SublayerView, calibration: torch.Tensor, ratio: float, importance: str = "element",
                     first_layer: int = 4, keep_last: int = 2, progress: bool = True) -> list[list[int]]:
    """Prune ``view.model`` in place (see the module docstring); returns every layer's [query heads per KV group,
    MLP width]."""
    model = view.model
    calibration_gradients(model, calibration, view.batch_size, progress)
    last = max(first_layer, view.num_layers - keep_last)
    try:
        for layer in range(first_layer, last):
            attn = getattr(view.layers[layer], view.adapter.attn)
            heads, channels = kept(*group_scores(view, layer, importance), attn.config.num_key_value_heads, ratio)
            rows = torch.tensor([h * attn.head_dim + i for h in heads for i in range(attn.head_dim)])
            _keep(attn.q_proj, rows, 0)
            _keep(attn.o_proj, rows, 1)
            attn.num_key_value_groups = len(heads) // attn.config.num_key_value_heads
            mlp = getattr(view.layers[layer], view.adapter.mlp)
            index = torch.tensor(channels)
            for linear, dim in ((mlp.gate_proj, 0), (mlp.up_proj, 0), (mlp.down_proj, 1)):
                _keep(linear, index, dim)
    finally:
        model.zero_grad(set_to_none=True)
    shapes = layer_shapes(model)
    set_layer_shapes(model, shapes)  # records them in the config, the modules already have them
    return shapes


class LLMPrunerPruner(OneShotPruner):
    """LLM-Pruner as a method of the registry (kind "structured"): ``run()`` prunes heads and channels in one shot."""

    options = ("structured_ratio", "importance")

    def __init__(self, view: SublayerView, calibration: torch.Tensor, ratio: float = 0.2, importance: str = "element",
                 progress: bool = True):
        super().__init__(view, calibration, progress)
        self.ratio, self.importance = ratio, importance
        self.shapes: list[list[int]] = []
        self.params_before = sum(p.numel() for p in view.model.parameters())

    def run(self) -> list[list[int]]:
        self.shapes = prune_structures(self.view, self.calibration, self.ratio, self.importance,
                                       progress=self.progress)
        return self.shapes

    def record(self) -> dict:
        """What pruning.json says about the result: the ratio, the importance, every layer's shapes, the parameters."""
        return {"structured_ratio": self.ratio, "importance": self.importance, "layer_shapes": self.shapes,
                "params_before": self.params_before,
                "params_after": sum(p.numel() for p in self.view.model.parameters())}
