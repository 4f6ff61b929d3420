"""Wanda: pruning by weights and activations (Sun, Liu, Bair & Kolter, ICLR 2024), as a baseline of the paper's Fig. 5.

Paper -> code:

- score of weight W_ij of a linear layer, S_ij = |W_ij| · ‖X_j‖₂ (their Eq. 1), X_j the j-th input feature over the
  N·L calibration tokens: :func:`wanda_scores` (``Stats.sq_norm`` holds ‖X_j‖₂²);
- comparison group: each output row (per-output pruning, their §3): the ``sparsity`` share of lowest scores of
  every row is set to zero; N:M (e.g. 2:4): the M - N lowest of every M consecutive weights of a row;
- every linear layer of every decoder layer (q, k, v, o, gate, up, down), layer by layer on activations through the
  layers already pruned (:mod:`sprint.methods.layerwise`); no weight update and no fine-tuning.

The pruned model keeps its dense shapes: zeros run at dense speed on this CPU (and 2:4 only gains on GPUs with
semi-structured sparse kernels).
"""

from __future__ import annotations

import torch
from torch import nn

from sprint.methods.layerwise import Stats, WeightPruner, lowest_mask, prune_layerwise
from sprint.model.sublayers import SublayerView


def wanda_scores(weight: torch.Tensor, sq_norm: torch.Tensor) -> torch.Tensor:
    """S = |W| · ‖X_j‖₂ broadcast over rows: [out, in]."""
    return weight.abs().to(torch.float64) * sq_norm.to(weight.device, torch.float64).sqrt()[None, :]


def wanda_prune(view: SublayerView, calibration: torch.Tensor, sparsity: float = 0.5, pattern: str = "unstructured",
                progress: bool = True) -> dict[str, float]:
    """Prune every decoder linear of ``view.model`` in place; returns each linear's share of zero weights."""
    done: dict[str, float] = {}

    def prune(name: str, linear: nn.Linear, stats: Stats) -> None:
        mask = lowest_mask(wanda_scores(linear.weight, stats.sq_norm), sparsity, pattern)
        linear.weight[mask.to(linear.weight.device)] = 0
        done[name] = mask.float().mean().item()

    prune_layerwise(view, calibration, prune, progress=progress)
    return done


class WandaPruner(WeightPruner):
    """Wanda as a method of the registry (kind "weights")."""

    def prune(self) -> dict[str, float]:
        return wanda_prune(self.view, self.calibration, self.sparsity, self.pattern, self.progress)
