"""Paired comparisons: bootstrap CIs on hand-made per-document results, best-method marks, mismatched documents."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sprint.measure import stats
from sprint.errors import SprintError

IDS = list(range(0, 40, 2))  # 20 documents per task


def _acc(*tasks: list[int]) -> stats.Sample:
    """One 0/1 correctness list per task, all on the documents IDS."""
    return {f"task{i}": (IDS, correct) for i, correct in enumerate(tasks)}


def test_statistics_by_hand():
    strata = [np.array([[1, 0, 1, 1]]), np.array([[0, 0, 1, 0, 1, 0]])]
    assert stats.mean_accuracy(strata) == pytest.approx([(0.75 + 2 / 6) / 2])  # mean of task means, not of docs
    assert stats.perplexity([np.array([[1.0, 2.0]]), np.array([[3.0]])]) == pytest.approx([math.exp(2.0)])


def test_identical_models_differ_by_zero():
    rng = np.random.default_rng(1)
    a = _acc(*(rng.integers(0, 2, len(IDS)).tolist() for _ in range(3)))
    diff = stats.paired_bootstrap(a, a, stats.mean_accuracy)
    assert (diff.estimate, diff.lo, diff.hi) == (0.0, 0.0, 0.0) and diff.includes_zero


def test_right_where_the_other_is_wrong_excludes_zero():
    n = len(IDS)
    diff = stats.paired_bootstrap(_acc([1] * n, [1] * n), _acc([0] * n, [0] * n), stats.mean_accuracy)
    assert (diff.estimate, diff.lo, diff.hi) == (1.0, 1.0, 1.0) and not diff.includes_zero
    pattern = [1, 1, 1, 0] * (n // 4)  # 75 % right; the other model is right exactly where this one is wrong
    a, b = _acc(pattern, pattern), _acc(*[[1 - c for c in pattern]] * 2)
    diff = stats.paired_bootstrap(a, b, stats.mean_accuracy, seed=3)
    assert diff.estimate == pytest.approx(0.5) and 0 < diff.lo < 0.5 < diff.hi and not diff.includes_zero
    assert stats.paired_bootstrap(a, b, stats.mean_accuracy, seed=3) == diff  # seeded


def test_pairing_removes_shared_noise():
    """Per-window NLLs that differ by a constant: the paired CI is tight while each model's own CI is wide."""
    nll = np.random.default_rng(0).normal(3.0, 0.5, 50)
    a, b = {"w": (range(50), nll + 0.05)}, {"w": (range(50), nll)}
    diff = stats.paired_bootstrap(a, b, stats.perplexity)
    assert diff.estimate == pytest.approx(math.exp(nll.mean() + 0.05) - math.exp(nll.mean()))
    lo, hi = stats.bootstrap_ci(b, stats.perplexity)
    assert lo < math.exp(nll.mean()) < hi and not diff.includes_zero and diff.hi - diff.lo < (hi - lo) / 5


def test_mismatched_documents_raise():
    a = _acc([1] * len(IDS))
    shifted = {"task0": ([i + 1 for i in IDS], [1] * len(IDS))}
    with pytest.raises(SprintError, match="different items of task0"):
        stats.paired_bootstrap(a, shifted, stats.mean_accuracy)
    with pytest.raises(SprintError, match="different tasks"):
        stats.paired_bootstrap(a, _acc([1] * len(IDS), [1] * len(IDS)), stats.mean_accuracy)
    with pytest.raises(SprintError, match="number of ids and values"):
        stats.paired_bootstrap(a, {"task0": (IDS, [1])}, stats.mean_accuracy)


def test_compare_to_best_marks():
    n = len(IDS)
    samples = {"good": _acc([1] * n), "tied": _acc([1] * (n - 1) + [0]), "bad": _acc([0] * n)}
    verdicts = stats.compare_to_best(samples, stats.mean_accuracy, higher_is_better=True)
    assert {k: v.mark for k, v in verdicts.items()} == {"good": "best", "tied": "≈", "bad": "worse"}
    assert verdicts["bad"].value == 0.0 and verdicts["bad"].diff.estimate == -1.0
    assert verdicts["good"].diff == stats.Difference(0.0, 0.0, 0.0)
    windows = {"low": {"w": (range(4), [1.0, 1.1, 0.9, 1.0])}, "high": {"w": (range(4), [2.0, 2.1, 1.9, 2.0])}}
    ppl = stats.compare_to_best(windows, stats.perplexity, higher_is_better=False)
    assert ppl["low"].mark == "best" and ppl["high"].mark == "worse"
    assert ppl["low"].value == pytest.approx(math.e)


def test_the_detectable_difference_follows_the_discordant_pairs():
    """Two models that disagree on a share q of n documents (half each way): the per-document difference has
    variance q, so the paired standard error is sqrt(q / n) and 80 % power at the 5 % level needs 2.80 of them; the
    bootstrap's figure agrees, and it shrinks with the square root of the documents."""
    for n, q in ((400, 0.3), (1600, 0.3), (400, 0.1)):
        ids = list(range(n))
        k = int(q * n) // 2
        a = [1] * k + [0] * k + [1] * ((n - 2 * k) // 2) + [0] * (n - 2 * k - (n - 2 * k) // 2)
        b = [0] * k + [1] * k + a[2 * k:]
        got = stats.detectable_difference({"t": (ids, a)}, {"t": (ids, b)}, stats.mean_accuracy, n_boot=4000)
        assert got == pytest.approx(2.8016 * math.sqrt(q / n), rel=0.06), (n, q, got)
    same = {"t": (list(range(50)), [1, 0] * 25)}
    assert stats.detectable_difference(same, same, stats.mean_accuracy) == 0.0  # identical answers: no spread


def test_pooling_calibration_seeds_sees_what_each_seed_cannot():
    """A method 2 documents per task worse than its rival on each of 3 seeds, on different documents each seed (4
    wrong where the rival is right, 2 right where it is wrong): no seed alone separates them, each document's mean
    over the seeds does; and the pooled difference is the mean of the per-seed ones."""
    n = len(IDS)
    rival = np.zeros(n, int)
    seeds = []
    for k in range(3):
        rival[6 * k:6 * k + 4] = 1
    for k in range(3):
        mine = rival.copy()
        mine[6 * k:6 * k + 4], mine[6 * k + 4:6 * k + 6] = 0, 1
        seeds.append(_acc(*[mine.tolist()] * 3))
    theirs = _acc(*[rival.tolist()] * 3)
    per_seed = [stats.paired_bootstrap(s, theirs, stats.mean_accuracy) for s in seeds]
    pooled = stats.paired_bootstrap(stats.over_seeds(seeds), theirs, stats.mean_accuracy)
    assert all(d.includes_zero and d.estimate == pytest.approx(-0.1) for d in per_seed)
    assert pooled.estimate == pytest.approx(-0.1) and pooled.hi < 0
    with pytest.raises(SprintError, match="different items"):
        stats.over_seeds([seeds[0], {"task0": ([i + 1 for i in IDS], rival.tolist())} | dict(list(seeds[0].items())[1:])])
