"""SparseGPT: one-shot pruning with layer-wise reconstruction (Frantar & Alistarh, ICML 2023), a baseline of Fig. 5.

Paper -> code (their Algorithm 1):

- H = 2·XXᵀ over the calibration inputs X of a linear layer, dampened by λ = ``damp`` · mean(diag H) (1% in the
  paper); Gram matrices come from :mod:`sprint.methods.layerwise` (``Stats.gram`` = XᵀX in our row-major layout);
- U = the upper Cholesky factor of H⁻¹, so that [H⁻¹ restricted to columns j..] is handled by row j of U;
- columns are processed left to right in blocks of B = ``block`` (128); the mask of a block is chosen when the block
  starts (adaptive mask selection, Bs = B): unstructured, the ``sparsity`` share of the block's weights with the
  lowest w² / U_cc² over all its rows; N:M, of every M consecutive columns of a row the M - N lowest;
- column j: the pruned weights are zeroed and the error e = (w_j - ŵ_j) / U_jj is spread over the columns still to
  come, W[:, j:] -= e · U[j, j:] (the OBS update), inside the block at once and to the later blocks lazily;
- every linear layer of every decoder layer, layer by layer on activations through the layers already pruned.

Columns whose input is always zero (diag H = 0) get H_jj = 1 and their weights are zeroed first, as in the paper's
code.  Computation is float64 on the CPU.  No fine-tuning.
"""

from __future__ import annotations

import torch
from torch import nn

from sprint.methods.layerwise import Stats, WeightPruner, lowest_mask, parse_pattern, prune_layerwise
from sprint.model.sublayers import SublayerView


def sparsegpt_weights(weight: torch.Tensor, gram: torch.Tensor, sparsity: float = 0.5, pattern: str = "unstructured",
                      block: int = 128, damp: float = 0.01) -> torch.Tensor:
    """The pruned and reconstructed weight (float64, [out, in]) of a linear layer whose inputs have Gram matrix
    ``gram`` [in, in]; exact zeros mark the pruned weights."""
    W = weight.detach().to("cpu", torch.float64).clone()
    H = 2 * gram.to(torch.float64).clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    nm = parse_pattern(pattern)
    cols = W.shape[1]
    for start in range(0, cols, block):
        end = min(start + block, cols)
        Wb, Ub = W[:, start:end].clone(), U[start:end, start:end]
        d = torch.diag(Ub)
        errors = torch.zeros_like(Wb)
        if nm is None:  # one mask for the whole block, over all its rows
            score = Wb**2 / d[None, :] ** 2
            k = int(score.numel() * sparsity)
            mask = torch.zeros_like(Wb, dtype=torch.bool)
            if k:
                mask.view(-1)[score.view(-1).topk(k, largest=False).indices] = True
        else:
            mask = torch.zeros_like(Wb, dtype=torch.bool)
        for j in range(end - start):
            if nm is not None and j % nm[1] == 0:  # the next M columns' mask, from the weights as updated so far
                group = slice(j, j + nm[1])
                mask[:, group] = lowest_mask(Wb[:, group] ** 2 / d[None, group] ** 2, 0.0, pattern)
            w = Wb[:, j]
            err = torch.where(mask[:, j], w, torch.zeros_like(w)) / d[j]
            Wb[:, j:] -= err[:, None] * Ub[j, j:][None, :]
            Wb[mask[:, j], j] = 0
            errors[:, j] = err
        W[:, start:end] = Wb
        W[:, end:] -= errors @ U[start:end, end:]
    return W


def sparsegpt_prune(view: SublayerView, calibration: torch.Tensor, sparsity: float = 0.5,
                    pattern: str = "unstructured", block: int = 128, damp: float = 0.01,
                    progress: bool = True) -> dict[str, float]:
    """Prune and reconstruct every decoder linear of ``view.model`` in place; returns each one's share of zeros."""
    done: dict[str, float] = {}

    def prune(name: str, linear: nn.Linear, stats: Stats) -> None:
        new = sparsegpt_weights(linear.weight, stats.gram, sparsity, pattern, block, damp)
        linear.weight.copy_(new.to(linear.weight.dtype))
        done[name] = (linear.weight == 0).float().mean().item()

    prune_layerwise(view, calibration, prune, gram=True, progress=progress)
    return done


class SparseGPTPruner(WeightPruner):
    """SparseGPT as a method of the registry (kind "weights"; the paper's block 128 and 1% dampening)."""

    def prune(self) -> dict[str, float]:
        return sparsegpt_prune(self.view, self.calibration, self.sparsity, self.pattern, progress=self.progress)
