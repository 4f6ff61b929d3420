"""Paired comparisons of models evaluated on the same documents: paired bootstrap and "indistinguishable from best".

Every model answers the same documents of each task (and scores the same WikiText-2 windows), so two models are
compared on their per-item differences rather than on two independent means: a paired bootstrap resamples the
items (with the same indices for both models) and reads the 95 % CI of the difference of a statistic.

A *sample* is ``{stratum: (ids, values)}``: for accuracy one stratum per task with the lm-eval ``doc_id`` s and the
0/1 correctness of each document; for perplexity one stratum of window indices and per-window mean NLLs.  Strata
are resampled independently (documents within their task), so a task keeps its size in every resample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sprint.errors import SprintError

Sample = Mapping[str, tuple[Sequence[int], Sequence[float]]]
Statistic = Callable[[list[np.ndarray]], np.ndarray]  # per-stratum arrays (..., n_s) -> values (...)
CHUNK = 100  # resamples drawn at once: bounds memory at CHUNK x (items of a stratum) indices


def mean_accuracy(strata: list[np.ndarray]) -> np.ndarray:
    """Mean over tasks of each task's accuracy (the paper's mean accuracy), from 0/1 correctness per task."""
    return np.mean([s.mean(axis=-1) for s in strata], axis=0)


def perplexity(strata: list[np.ndarray]) -> np.ndarray:
    """exp(mean window NLL): the perplexity when every window scores the same number of tokens."""
    return np.exp(np.concatenate(strata, axis=-1).mean(axis=-1))


@dataclass(frozen=True)
class Difference:
    """``estimate`` = stat(a) − stat(b) on the full data, ``lo`` / ``hi`` its paired-bootstrap 95 % CI."""

    estimate: float
    lo: float
    hi: float

    @property
    def includes_zero(self) -> bool:
        return self.lo <= 0.0 <= self.hi


def paired(samples: Sequence[Sample]) -> list[np.ndarray]:
    """Per stratum, the models' values aligned by id: arrays (models, n_s), strata in sorted name order.

    Raises SprintError unless every sample has the same strata with the same ids (documents, windows).
    """
    first = samples[0]
    for other in samples[1:]:
        if set(other) != set(first):
            raise SprintError(f"paired comparison: different tasks ({sorted(first)} vs {sorted(other)})")
    out = []
    for name in sorted(first):
        ids = [list(s[name][0]) for s in samples]
        values = [np.asarray(s[name][1], dtype=float) for s in samples]
        if any(len(i) != len(v) for i, v in zip(ids, values)):
            raise SprintError(f"paired comparison: {name} has a different number of ids and values")
        if any(i != ids[0] for i in ids[1:]):
            raise SprintError(f"paired comparison: the models were evaluated on different items of {name} "
                              f"(ids differ; sizes {sorted({len(i) for i in ids})}): evaluate them with the same "
                              "limit and seed")
        if not ids[0]:
            raise SprintError(f"paired comparison: {name} has no documents")
        out.append(np.stack(values))
    return out


def over_seeds(samples: Sequence[Sample]) -> Sample:
    """One sample whose values are each item's mean over ``samples``: one method pruned with different calibration
    seeds, every model evaluated on the same items.  A paired test of two such samples asks whether two methods
    differ on average over those calibration draws (conditional on them), with every seed's answers in it; for
    perplexity it compares the geometric means over seeds."""
    strata, first = paired(samples), samples[0]
    return {name: (list(first[name][0]), values.mean(axis=0)) for name, values in zip(sorted(first), strata)}


def bootstrap(strata: list[np.ndarray], stat: Statistic, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """``stat`` of ``n_boot`` resamples: (n_boot, models).

    ``strata``: arrays (models, n_s); each resample draws n_s items of every stratum with replacement, the same
    items for every model (the pairing), independently across strata.
    """
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n_boot, CHUNK):
        k = min(CHUNK, n_boot - start)
        drawn = [s[:, rng.integers(0, s.shape[1], size=(k, s.shape[1]))] for s in strata]  # (models, k, n_s)
        out.append(stat(drawn).T)
    return np.concatenate(out)


def _difference(estimate: float, resampled: np.ndarray) -> Difference:
    lo, hi = np.percentile(resampled, [2.5, 97.5])
    return Difference(float(estimate), float(lo), float(hi))


def paired_bootstrap(a: Sample, b: Sample, stat: Statistic, n_boot: int = 2000, seed: int = 0) -> Difference:
    """stat(a) − stat(b) and its 95 % percentile CI from a paired bootstrap over the shared items."""
    strata = paired([a, b])
    full, resampled = stat(strata), bootstrap(strata, stat, n_boot, seed)
    return _difference(full[0] - full[1], resampled[:, 0] - resampled[:, 1])


def detectable_difference(a: Sample, b: Sample, stat: Statistic, power: float = 0.8, n_boot: int = 2000,
                          seed: int = 0) -> float:
    """The smallest true |stat(a) − stat(b)| that a paired test at the 5 % level finds with probability ``power``,
    given these pairs' spread: (z_0.975 + z_power) × the paired-bootstrap standard error of the difference (the
    normal approximation; its scale is that of ``stat``)."""
    from statistics import NormalDist

    strata = paired([a, b])
    resampled = bootstrap(strata, stat, n_boot, seed)
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(power)
    return float(z * np.std(resampled[:, 0] - resampled[:, 1], ddof=1))


def bootstrap_ci(a: Sample, stat: Statistic, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile CI of ``stat`` of one model over resampled items."""
    lo, hi = np.percentile(bootstrap(paired([a]), stat, n_boot, seed)[:, 0], [2.5, 97.5])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Verdict:
    """One method against the best: ``mark`` is "best", "≈" (CI of the difference includes 0) or "worse"."""

    mark: str
    value: float
    diff: Difference  # this method − the best (all 0 for the best itself)


def compare_to_best(samples: Mapping[str, Sample], stat: Statistic, higher_is_better: bool, n_boot: int = 2000,
                    seed: int = 0) -> dict[str, Verdict]:
    """The best method by ``stat`` and, for each method, its difference from the best and its mark.

    All methods share the same resamples.  Raises SprintError when they were not evaluated on the same items.
    Ties go to the first method.
    """
    names = list(samples)
    strata = paired([samples[n] for n in names])
    values, resampled = stat(strata), bootstrap(strata, stat, n_boot, seed)
    b = int(np.argmax(values) if higher_is_better else np.argmin(values))
    out = {}
    for i, name in enumerate(names):
        diff = _difference(values[i] - values[b], resampled[:, i] - resampled[:, b])
        out[name] = Verdict("best" if i == b else "≈" if diff.includes_zero else "worse", float(values[i]), diff)
    return out
