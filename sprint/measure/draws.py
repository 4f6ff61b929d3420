"""Latency tables drawn from a profile's own rounds, and where a fixed removal order stops under a table.

A profile (:func:`sprint.measure.profile.profile_latency`) records the time of every round for the dense model and
the two partially pruned ones (``times_s``: ``dense``, ``mlp``, ``attn``, one entry per round, the three of a round
measured together).  A *draw* resamples the rounds with replacement, whole rounds at a time (the three times of a
round stay together: they share the machine's state), and recomputes the table exactly as the profile does: the
per-sublayer saving as a share of the dense time, per round (1 − T_kind / T_dense) / n, located by the protocol's
estimator, times the dense time located the same way.  The spread of the draws is the table's own uncertainty.

No torch: this module is arithmetic on recorded numbers.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import replace
from typing import Sequence

from sprint.errors import SprintError
from sprint.measure.protocol import estimate
from sprint.measure.table import LatencyTable

KINDS = ("attn", "mlp")


def recorded_rounds(table: LatencyTable) -> tuple[dict[str, list[float]], int, str]:
    """(times per subject, sublayers removed per partial model n, estimator) of a profiled table; SprintError for a
    table without recorded rounds (hand-written, or profiled before the rounds were kept)."""
    times = table.extra.get("times_s")
    if not isinstance(times, dict) or not all(isinstance(times.get(k), list) for k in ("dense", *KINDS)):
        raise SprintError("the latency table has no recorded rounds (times_s: dense, attn, mlp): draws need a table "
                          "measured by 'sprint profile'")
    lengths = {len(times[k]) for k in ("dense", *KINDS)}
    if len(lengths) != 1 or min(lengths) < 2:
        raise SprintError(f"the latency table's recorded rounds do not pair up (lengths {sorted(lengths)})")
    n = table.extra.get("n_removed")
    if not isinstance(n, int) or n < 1:
        raise SprintError("the latency table does not record n_removed (sublayers removed per partial model)")
    protocol = table.extra.get("protocol") or {}
    return {k: [float(x) for x in times[k]] for k in ("dense", *KINDS)}, n, protocol.get("estimator", "hodges-lehmann")


def table_from_rounds(table: LatencyTable, rounds: Sequence[int], draw: int | None = None) -> LatencyTable:
    """The table the profile would have written had it measured these rounds (indices into the recorded ones,
    repeats allowed).  ``draw`` is recorded in ``extra["draw"]`` with the rounds used."""
    times, n, estimator = recorded_rounds(table)
    dense = [times["dense"][i] for i in rounds]
    t1 = estimate(dense, statistics.median(dense), estimator)["value"]
    shares = {k: estimate([(1 - times[k][i] / times["dense"][i]) / n for i in rounds], 1 / n, estimator)["value"]
              for k in KINDS}
    extra = {k: v for k, v in table.extra.items() if k not in ("ci95", "spread", "times_s", "given")}
    extra["draw"] = {"index": draw, "rounds": list(rounds)}
    return replace(table, dense_s=t1, t_attn_s=t1 * shares["attn"], t_mlp_s=t1 * shares["mlp"], extra=extra)


def bootstrap_tables(table: LatencyTable, k: int, seed: int = 0) -> list[LatencyTable]:
    """``k`` tables from bootstrap resamples of the recorded rounds (seeded; draw i is the same for any k > i)."""
    if k < 1:
        raise SprintError(f"the number of draws must be >= 1, got {k}")
    times, _, _ = recorded_rounds(table)
    r = len(times["dense"])
    rng = random.Random(seed)
    draws = []
    for i in range(k):
        rounds = [rng.randrange(r) for _ in range(r)]
        draws.append(table_from_rounds(table, rounds, draw=i))
    return draws


def counts(removed: Sequence[tuple[int, str]]) -> tuple[int, int]:
    n_attn = sum(kind == "attn" for _, kind in removed)
    return n_attn, len(removed) - n_attn


def cut(steps: Sequence[Sequence[tuple[int, str]]], table: LatencyTable, target: float) -> int:
    """How many steps of a fixed removal order (each step: the (layer, kind) it removed) a run to ``target`` takes
    under ``table``: the first prefix whose estimated speedup meets the target, the stopping rule of
    :func:`sprint.methods.driver.prune_model`.  SprintError when the whole order does not reach it."""
    removed: list[tuple[int, str]] = []
    for i in range(len(steps) + 1):
        if table.speedup(*counts(removed)) >= target - 1e-12:
            return i
        if i < len(steps):
            removed.extend(steps[i])
    raise SprintError(f"the removal order ({len(steps)} steps) does not reach {target:g}x under the table "
                      f"(t_attn {table.t_attn_s:.4g} s, t_mlp {table.t_mlp_s:.4g} s, dense {table.dense_s:.4g} s)")


def reached(steps: Sequence[Sequence[tuple[int, str]]], tables: Sequence[LatencyTable], target: float) -> bool:
    """Whether the order reaches ``target`` under every table."""
    removed = [r for step in steps for r in step]
    return all(t.speedup(*counts(removed)) >= target - 1e-12 for t in tables)


def ratio_interval(table: LatencyTable, draws: int = 200, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """The ``level`` interval (percentiles) of t_mlp / t_attn over ``draws`` bootstrap tables: how far the table's
    own rounds let the relative price of an MLP and an attention sublayer move.  SprintError for a table without
    recorded rounds."""
    ratios = sorted(t.t_mlp_s / t.t_attn_s for t in bootstrap_tables(table, draws, seed) if t.t_attn_s > 0)
    if not ratios:
        raise SprintError("no drawn table has a positive attention saving: t_mlp / t_attn is undefined")
    tail = (1 - level) / 2
    pick = lambda q: ratios[min(len(ratios) - 1, max(0, round(q * (len(ratios) - 1))))]  # noqa: E731
    return pick(tail), pick(1 - tail)
