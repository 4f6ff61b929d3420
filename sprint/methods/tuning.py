"""Fast in-compression tuning (paper Eq. 3): least squares on the rows of an MLP's output projection.

With Ẑ [tokens, I] the input of ``down_proj`` on the pruned path and B [tokens, H] the target of its output
(reference output minus the pruned residual input, so that X̂ + Ẑ Wᵀ ≈ X_ref), each output row w_i solves
    min_w ||Ẑ w − B_i||²   ⇔   G w = C_i,   G = ẐᵀẐ,  C = ẐᵀB.
The statistics are accumulated over the calibration set in float64; the squared error of *any* row vector w
follows from them without a second pass:  err_i(w) = ||B_i||² − 2 wᵀC_i + wᵀ G w.

Numerics (field notes: torch's default CPU ``gelsy`` is ~90% off on SmolLM2's ill-conditioned Gram matrix and
CUDA's ``gels`` silently fails on rank-deficient input): we factor G with a float64 Cholesky, escalating a small
ridge only when the factorisation fails or the solve is inaccurate, and keep the old row wherever the new one
would not lower the calibration error.  The result is finite, repeatable, and never worse than no tuning.
"""

from __future__ import annotations

import logging
import math
import weakref
from dataclasses import dataclass, field

import torch

log = logging.getLogger("sprint")

RIDGES = (0.0, 1e-9, 1e-6, 1e-3)  # relative to mean(diag G); 0 first: the paper's undamped solve
SOLVE_TOLERANCE = 1e-6  # relative residual ||G x − C|| / ||C|| accepted from a Cholesky solve
LIVE = {"now": 0, "peak": 0, "factorizations": 0, "factor_flops": 0.0}  # TuningStats alive at once, the most
# ever, Cholesky factorisations tried and their FLOPs (a failed one stops at its first non-positive pivot: j columns of
# n counted as the unblocked algorithm's (n³ − (n − j)³) / 3, a lower bound: LAPACK's blocked one does more before it
# fails, docs/memory.md); accounting for sprint.methods.plan's checks


def _released() -> None:
    LIVE["now"] -= 1


@dataclass
class TuningStats:
    """Accumulators for one tuning problem (one candidate, one MLP output projection)."""

    inner: int
    outer: int
    gram: torch.Tensor = field(init=False)  # G = ẐᵀẐ   [I, I]
    cross: torch.Tensor = field(init=False)  # C = ẐᵀB   [I, H]
    target_sq: torch.Tensor = field(init=False)  # ||B_i||²  [H]
    tokens: int = 0

    def __post_init__(self) -> None:
        self.gram = torch.zeros(self.inner, self.inner, dtype=torch.float64)
        self.cross = torch.zeros(self.inner, self.outer, dtype=torch.float64)
        self.target_sq = torch.zeros(self.outer, dtype=torch.float64)
        LIVE["now"] += 1
        LIVE["peak"] = max(LIVE["peak"], LIVE["now"])
        weakref.finalize(self, _released)

    def nbytes(self) -> int:
        return (self.gram.numel() + self.cross.numel() + self.target_sq.numel()) * 8

    def add(self, z: torch.Tensor, b: torch.Tensor) -> None:
        """z [m, I], b [m, H] (any float dtype / device): fp32 matmuls, float64 accumulation on the CPU."""
        z, b = z.reshape(-1, self.inner).float(), b.reshape(-1, self.outer).float()
        self.gram += gram(z).cpu()
        self.cross += (z.T @ b).cpu()
        self.target_sq += b.double().pow(2).sum(0).cpu()
        self.tokens += z.shape[0]

    def row_errors(self, weight: torch.Tensor) -> torch.Tensor:
        """Squared calibration error of each output row for weight [H, I] (float64), from the statistics alone."""
        w = weight.double()
        return self.target_sq - 2 * (w * self.cross.T).sum(1) + ((w @ self.gram) * w).sum(1)


def gram(z: torch.Tensor, blocks: int = 4) -> torch.Tensor:
    """ZᵀZ from its upper block triangle, mirrored: the Gram matrix is symmetric, so this spends (k+1)/2k of the
    full product's FLOPs on k column blocks."""
    n = z.shape[1]
    edges = [i * n // blocks for i in range(blocks + 1)]
    out = torch.empty(n, n, dtype=z.dtype, device=z.device)
    for lo, hi in zip(edges, edges[1:]):
        out[lo:hi, lo:] = z[:, lo:hi].T @ z[:, lo:]
        out[hi:, lo:hi] = out[lo:hi, hi:].T
    return out


def select_rows(weight: torch.Tensor, gram_diag: torch.Tensor, ratio: float) -> torch.Tensor:
    """Indices of the top ceil(ratio·H) rows by Σ_j |W_ij|·||Ẑ_j||₂ (outlier-aware, Wanda-style; paper Sec. 3.3)."""
    h = weight.shape[0]
    k = min(h, max(1, math.ceil(ratio * h)))
    if k == h:
        return torch.arange(h)
    score = (weight.double().abs() * gram_diag.clamp_min(0).sqrt()[None, :]).sum(1)
    return torch.topk(score, k).indices.sort().values


def solve_normal_equations(
    gram: torch.Tensor, rhs: torch.Tensor, singular: bool = False, min_ridge: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Solve (G + λI) X = R in float64 by Cholesky, λ = 0 first, then a growing relative ridge if the factorisation
    fails or the solve is inaccurate.  ``singular``: G is known to be rank-deficient (fewer tokens than columns),
    so λ = 0 is skipped.  ``min_ridge`` > 0 (relative to mean(diag G)) starts there instead: a damped solve on
    purpose (PruneConfig.ridge), escalated the same way.  Returns (X, (G + λI) X, λ)."""
    scale = gram.diagonal().mean().clamp_min(1e-30)
    rhs_norm = rhs.norm().clamp_min(1e-30)
    if min_ridge > 0:
        ridges = (min_ridge, *(r for r in RIDGES if r > min_ridge))
    else:
        ridges = RIDGES[1:] if singular else RIDGES
    for ridge in ridges:
        # memory (issue 26): drop the last attempt's matrices before building the next, and add the ridge to a
        # copy's diagonal rather than adding a scaled identity (two I x I temporaries fewer; the same numbers:
        # G_ij + λ·0 = G_ij, G_ii + λ·1 = G_ii + λ), so an escalation holds G + λI and its factor, no more
        g = factor = x = gx = None
        if ridge:
            g = gram.clone()
            g.diagonal().add_(ridge * scale)
        else:
            g = gram
        factor, info = torch.linalg.cholesky_ex(g)
        n, done = g.shape[-1], (info.item() - 1 if info.item() > 0 else g.shape[-1])
        LIVE["factorizations"] += 1
        LIVE["factor_flops"] += (n**3 - (n - done) ** 3) / 3
        if info.item() != 0:
            continue
        x = torch.cholesky_solve(rhs, factor)
        if not torch.isfinite(x).all():
            continue
        gx = g @ x
        if ((gx - rhs).norm() / rhs_norm).item() <= SOLVE_TOLERANCE or ridge == ridges[-1]:
            if ridge:
                log.debug("Gram matrix needed ridge %.0e (relative) for a stable solve", ridge)
            return x, gx, ridge * scale.item()
    raise FloatingPointError("least-squares tuning failed even with the largest ridge")


@dataclass
class TuningResult:
    rows: torch.Tensor  # LongTensor [k]: rows of W that change
    weight: torch.Tensor  # float64 [k, I]: their new values
    error_sq: float  # total squared calibration error of all rows after tuning
    error_sq_before: float
    ridge: float


def tune_rows(stats: TuningStats, weight: torch.Tensor, ratio: float, errors_before: torch.Tensor,
              min_ridge: float = 0.0) -> TuningResult:
    """Least-squares tuning of the top ``ratio`` rows of ``weight`` [H, I].

    ``errors_before`` [H] are the rows' squared calibration errors with the current weights (measured directly
    on the calibration set by the caller).  Rows that tuning would not improve keep their weights, so the total
    error never increases.
    """
    w = weight.detach().double().cpu()
    rows = select_rows(w, stats.gram.diagonal(), ratio)
    cross = stats.cross[:, rows]  # [I, k]
    x, gx, ridge = solve_normal_equations(stats.gram, cross, singular=stats.tokens < stats.inner, min_ridge=min_ridge)
    # err(x) = ||b||² − 2 xᵀc + xᵀGx, with Gx = (G + λI)x − λx from the solve (no extra matmul)
    after = stats.target_sq[rows] - 2 * (x * cross).sum(0) + (x * (gx - ridge * x)).sum(0)
    before = errors_before.double().cpu()
    better = after < before[rows]
    total = before.clone()
    total[rows[better]] = after[better]
    return TuningResult(rows[better], x.T[better].contiguous(), total.sum().clamp_min(0).item(),
                        before.sum().clamp_min(0).item(), ridge)
