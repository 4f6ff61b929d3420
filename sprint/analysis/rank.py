"""Rank statistics for the analyses: ranks with ties averaged, Spearman's ρ, and a seeded bootstrap CI over the
items (no torch, no scipy)."""

from __future__ import annotations

import math
import random
from typing import Sequence


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ascending (rank 1 = smallest), ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's r of the average ranks); NaN with fewer than 3 items or a constant."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} and {len(y)} values")
    if len(x) < 3:
        return math.nan
    return _pearson(ranks(x), ranks(y))


def spearman_ci(x: Sequence[float], y: Sequence[float], n_boot: int = 2000, seed: int = 0,
                level: float = 0.95) -> dict:
    """{"rho", "ci95": [lo, hi], "n"}: ρ and a percentile bootstrap CI over the items (pairs resampled together)."""
    rho = spearman(x, y)
    n = len(x)
    if n < 3 or math.isnan(rho):
        return {"rho": rho, "ci95": [math.nan, math.nan], "n": n}
    rng = random.Random(seed)
    boots = []
    for _ in range(n_boot):
        idx = [rng.randrange(n) for _ in range(n)]
        r = spearman([x[i] for i in idx], [y[i] for i in idx])
        if not math.isnan(r):
            boots.append(r)
    boots.sort()
    lo = boots[int((1 - level) / 2 * (len(boots) - 1))]
    hi = boots[int((1 + level) / 2 * (len(boots) - 1))]
    return {"rho": rho, "ci95": [lo, hi], "n": n}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between order statistics (numpy's default)."""
    x = sorted(values)
    if not x:
        return math.nan
    pos = (len(x) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(x) - 1)
    return x[lo] + (x[hi] - x[lo]) * (pos - lo)
