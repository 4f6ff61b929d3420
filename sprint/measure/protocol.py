"""The latency protocol: how every timing of the project is taken (:class:`Protocol`), and the distribution-free
estimators and 95% CIs a timing is reported with.  Settings and statistics only: no torch (the command line reads
the protocol's fields without loading a model).
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from sprint.errors import SprintError

log = logging.getLogger("sprint")


TIMINGS = ("generate", "step")



SPARSE_KERNELS = ("auto", "dense")  # how a 2:4-sparse model is timed (sprint.measure.sparse_kernels)



class NoisyLatencyError(SprintError):
    """A latency measurement whose samples stayed spread beyond the protocol's bound."""



@dataclass(frozen=True)
class Protocol:
    """How every latency number of the project is measured: the profile's table, the pipeline's measured speedups
    and the benchmark's latency check all go through :func:`sprint.measure.timing.interleaved_rounds`.

    The timed unit is the generation of exactly ``gen_len`` tokens after a seeded random ``prompt_len`` prompt
    (batch 1, greedy, KV cache on). Every subject first runs ``warmup`` untimed generations; then each *round* times
    every subject once, the order rotated from round to round, so a drift of the machine hits all subjects alike.
    ``timing="generate"`` (the authors' protocol) times one whole HF ``generate`` per subject and round.
    ``timing="step"`` interleaves finer: the subjects' forwards alternate step by step (prefill, then each decode
    step, :func:`sprint.measure.timing.decode_steps`) and a subject's time is the sum of its steps.  That is for
    CPUs whose speed drifts over seconds (a shared host): steps milliseconds apart share their conditions where two
    whole generates a second apart do not.  It times the model's forwards and the greedy pick, not ``generate``'s
    own bookkeeping (the same for dense and pruned models), and it synchronises a GPU at every step: GPUs keep
    ``"generate"``.  ``threads`` > 0 sets torch's CPU threads while
    timing (0 leaves them): one thread keeps a busy neighbouring core out of the numbers; the table and the report record it as part of the device.  ``sparse_kernels`` says how a
    2:4-sparse checkpoint is timed: ``auto`` with semi-structured sparse kernels where the hardware has them (CUDA,
    compute capability 8.0+), ``dense`` as stored (:mod:`sprint.measure.sparse_kernels`).
    A quantity is a location estimate over rounds of a per-round value (a ratio of two times, a difference) with a
    95% confidence interval: by default (``estimator="hodges-lehmann"``) the Hodges-Lehmann estimate, the median of
    the pairwise means of the rounds, with the exact Wilcoxon signed-rank CI (:func:`hodges_lehmann_ci`); with
    ``estimator="median"`` the sample median with its order-statistic CI (:func:`median_ci`).  Both CIs are
    distribution-free; Hodges-Lehmann's assumes the per-round values are symmetric about their centre (timing
    noise on interleaved rounds hits both sides of a ratio alike) and in exchange is narrower: 0.82-0.99 of the
    median's width on simulated symmetric noise (tests/measure/test_latency.py), and 0.6-0.8 on recorded rounds
    (scripts/estimator_widths.py), so the same precision takes about half the rounds.  The median's needs no symmetry.  Its *spread* is the CI's
    half-width relative to the reference time (the dense model's). ``min_rounds`` rounds are taken, then more, up to
    ``max_rounds``, while any spread exceeds ``max_spread``; a measurement still too wide is taken again from
    scratch (``attempts`` in all) and, if it stays noisy, raises :class:`NoisyLatencyError`: no number is written
    that the protocol does not trust.
    """

    prompt_len: int = 64
    gen_len: int = 32
    timing: str = "generate"
    threads: int = 0
    warmup: int = 1
    min_rounds: int = 8
    max_rounds: int = 24
    max_spread: float = 0.03
    attempts: int = 2
    seed: int = 0
    estimator: str = "hodges-lehmann"
    sparse_kernels: str = "auto"

    def validate(self) -> None:
        if self.sparse_kernels not in SPARSE_KERNELS:
            raise SprintError(f"latency protocol: sparse_kernels must be one of {', '.join(SPARSE_KERNELS)}, got "
                              f"{self.sparse_kernels!r}")
        if self.timing not in TIMINGS:
            raise SprintError(f"latency protocol: timing must be one of {', '.join(TIMINGS)}, got {self.timing!r}")
        if self.estimator not in ESTIMATORS:
            raise SprintError(f"latency protocol: estimator must be one of {', '.join(ESTIMATORS)}, got "
                              f"{self.estimator!r}")
        if self.prompt_len < 1 or self.gen_len < 1 or self.warmup < 0:
            raise SprintError(f"latency protocol needs prompt_len, gen_len >= 1 and warmup >= 0, got "
                              f"prompt_len={self.prompt_len}, gen_len={self.gen_len}, warmup={self.warmup}")
        if not 6 <= self.min_rounds <= self.max_rounds:
            raise SprintError(f"latency protocol needs 6 <= min_rounds <= max_rounds (6 rounds are the fewest with a "
                              f"95% CI), got min_rounds={self.min_rounds}, max_rounds={self.max_rounds}")
        if self.threads < 0:
            raise SprintError(f"latency protocol: threads must be >= 0 (0 = torch's setting), got {self.threads}")
        if not 0 < self.max_spread < 1 or self.attempts < 1:
            raise SprintError(f"latency protocol needs 0 < max_spread < 1 and attempts >= 1, got "
                              f"max_spread={self.max_spread}, attempts={self.attempts}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(median, lo, hi): the sample median and the order-statistic CI [x_(j), x_(n-1-j)] holding the population
    median with probability >= ``level`` (the largest such j; the sample range when n is too small for ``level``)."""
    x = sorted(values)
    n = len(x)
    if n == 0:
        raise ValueError("median_ci of no values")
    j, cdf = 0, 0.0
    for k in range(n // 2):
        cdf += math.comb(n, k) / 2**n  # P(B <= k), B ~ Binomial(n, 1/2)
        if 1 - 2 * cdf < level:
            break
        j = k
    return statistics.median(x), x[j], x[n - 1 - j]



def hodges_lehmann_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(estimate, lo, hi): the Hodges-Lehmann estimate (the median of the n(n+1)/2 Walsh averages (x_i + x_j) / 2,
    i <= j) and the CI [w_(c), w_(M+1-c)] of the sorted Walsh averages that holds the centre of a symmetric
    distribution with probability >= ``level``, c the largest with P(T <= c - 1) <= (1 - level) / 2 under the exact
    null distribution of Wilcoxon's signed-rank statistic T (the full range when n is too small for ``level``)."""
    x = sorted(values)
    n = len(x)
    if n == 0:
        raise ValueError("hodges_lehmann_ci of no values")
    walsh = sorted((x[i] + x[j]) / 2 for i in range(n) for j in range(i, n))
    m = len(walsh)
    counts = [1] + [0] * m  # counts[t]: subsets of {1..n} with rank sum t (the signed-rank null, times 2^n)
    for k in range(1, n + 1):
        for t in range(m, k - 1, -1):
            counts[t] += counts[t - k]
    c, cdf = 0, 0.0
    for t in range(m):
        cdf += counts[t] / 2**n  # P(T <= t)
        if cdf > (1 - level) / 2:
            break
        c = t + 1
    lo, hi = (walsh[c - 1], walsh[m - c]) if c >= 1 else (walsh[0], walsh[-1])
    return statistics.median(walsh), lo, hi



ESTIMATORS = {"hodges-lehmann": hodges_lehmann_ci, "median": median_ci}



def estimate(values: list[float], scale: float, estimator: str = "hodges-lehmann") -> dict[str, Any]:
    """Location estimate, 95% CI and spread (the CI's larger half-width divided by ``scale``) of per-round values,
    by ``estimator`` (a key of :data:`ESTIMATORS`)."""
    est, lo, hi = ESTIMATORS[estimator](values)
    return {"value": est, "ci95": [lo, hi], "spread": max(est - lo, hi - est) / scale}

