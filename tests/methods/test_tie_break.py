"""SPRINT's tie_break option (issue 25): near-ties between the best attention and the best MLP candidate, judged
by the latency table's own uncertainty, go to the less sensitive one; without it nothing changes."""

import pytest
import torch

from sprint.errors import SprintError
from sprint.measure.draws import bootstrap_tables, ratio_interval, table_from_rounds
from sprint.measure.table import LatencyTable
from sprint.methods import PruneConfig
from sprint.methods.driver import prune_model
from sprint.methods.sprint import SprintPruner
from sprint.model.tiny import tiny_model

from helpers import profiled_table, random_ids


def bare_pruner(ratio_ci, t_attn=1.0, t_mlp=2.0):
    """A SprintPruner with only what ``_pick`` reads (no model): the rule itself, on chosen numbers."""
    p = SprintPruner.__new__(SprintPruner)
    p.latency = LatencyTable("cpu", "x", 0, 0, 100.0, t_attn, t_mlp)
    p.latency_aware, p.ratio_ci = True, ratio_ci
    return p


@pytest.mark.parametrize("ratio_ci,expected", [
    (None, 1),           # tie_break none: the lowest η (MLP 0: 1.5 / 2 = 0.75 < attention 0: 1.0 / 1)
    ((1.2, 2.5), 0),     # the pick flips at t_mlp/t_attn = 1.5, inside the interval: the lower ζ (attention 0)
    ((1.6, 2.5), 1),     # flip ratio outside the interval: the table can tell them apart, η decides
])
def test_a_near_tie_goes_to_the_less_sensitive_type(ratio_ci, expected):
    zeta = {0: 1.0, 1: 1.5, 2: 2.0, 3: 3.0}  # sublayers 0, 2: attention; 1, 3: MLP
    p = bare_pruner(ratio_ci)
    pick, flip = p._pick([0, 1, 2, 3], zeta.__getitem__)
    assert pick == expected
    assert flip == pytest.approx(1.5)  # ζ of the best MLP over ζ of the best attention
    assert p._pick([1, 3], zeta.__getitem__) == (1, None)  # one type only: nothing to compare


def test_the_ratio_interval_is_the_draws_percentiles():
    table = profiled_table(rounds=15)
    lo, hi = ratio_interval(table, draws=200)
    ratios = sorted(t.t_mlp_s / t.t_attn_s for t in bootstrap_tables(table, 200))
    assert ratios[0] <= lo < hi <= ratios[-1]
    assert lo <= table.t_mlp_s / table.t_attn_s <= hi
    with pytest.raises(SprintError, match="no recorded rounds"):
        ratio_interval(LatencyTable("cpu", "x", 0, 0, 1.0, 0.05, 0.08))


def test_tie_break_needs_a_profiled_table():
    hand = LatencyTable("cpu", "tiny", 8, 4, 1.0, 0.05, 0.08)
    with pytest.raises(SprintError, match="tie_break=sensitivity needs the latency table's uncertainty"):
        prune_model(tiny_model("llama", 4), random_ids(), hand,
                    PruneConfig("sprint", 1.1, tie_break="sensitivity"), progress=False)
    with pytest.raises(SprintError, match="tie_break"):
        PruneConfig("sprint", 1.1, tie_break="coin").validate()


def run(table, **kw):
    model = tiny_model("llama", 6)
    pruner = prune_model(model, random_ids(), table, PruneConfig("sprint", 1.45, beta=3, alpha=3, **kw),
                         progress=False)
    return model, pruner


def test_a_table_without_spread_changes_nothing_and_a_wide_one_prefers_low_sensitivity():
    """Identical rounds give a zero-width interval: the run is the default's, weight for weight.  Rounds whose
    attention saving swings widely make every cross-type pick a near-tie: each such removal has the lower ζ."""
    exact = profiled_table(rounds=9)
    times = exact.extra["times_s"]
    same = {k: [v[0]] * 9 for k, v in times.items()}
    flat = table_from_rounds(LatencyTable("cpu", "tiny", 8, 4, 1.0, 0.05, 0.08,
                                          extra={**exact.extra, "times_s": same}), range(9))
    flat.extra["times_s"] = same
    m_none, p_none = run(flat)
    m_tie, p_tie = run(flat, tie_break="sensitivity")
    assert p_tie.ratio_ci[0] == p_tie.ratio_ci[1]
    assert [r.to_dict() for r in p_tie.removed] == [r.to_dict() for r in p_none.removed]
    for a, b in zip(m_none.parameters(), m_tie.parameters()):
        assert torch.equal(a, b)
    assert any(r.flip_ratio is not None for r in p_none.removed)  # recorded by the default too

    swing = {k: list(v) for k, v in times.items()}
    swing["attn"] = [d * (1 - f) for d, f in zip(swing["dense"], (0.005, 0.3, 0.02, 0.25, 0.01, 0.2, 0.03, 0.28, 0.015))]
    wide = LatencyTable("cpu", "tiny", 8, 4, exact.dense_s, exact.t_attn_s, exact.t_mlp_s,
                        extra={**exact.extra, "times_s": swing})
    _, p_wide = run(wide, tie_break="sensitivity")
    lo, hi = p_wide.ratio_ci
    assert hi / lo > 5
    inside = [r for r in p_wide.removed if r.flip_ratio is not None and lo < r.flip_ratio < hi]
    assert inside  # near-ties were decided by sensitivity
    _, p_default = run(wide)
    assert [(r.layer, r.kind) for r in p_wide.removed] != [(r.layer, r.kind) for r in p_default.removed]
