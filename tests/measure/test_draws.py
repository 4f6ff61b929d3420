"""Latency tables drawn from a profile's recorded rounds, the cut of a fixed removal order, and rank statistics."""

import json
import random
from pathlib import Path

import pytest

from sprint.measure.draws import bootstrap_tables, counts, cut, recorded_rounds, table_from_rounds
from sprint.analysis.rank import percentile, ranks, spearman, spearman_ci
from sprint.errors import SprintError
from sprint.measure.table import LatencyTable, load_latency
from sprint.methods import PruneConfig
from sprint.methods.driver import prune_model
from sprint.model.tiny import tiny_model

from helpers import profiled_table, random_ids

REPO = Path(__file__).resolve().parents[2]
PROFILED = REPO / "docs/results/smollm2-cpu/results/smollm2-135m/latency.json"


def test_all_rounds_once_give_back_the_recorded_table():
    """The draw of every round once is the profile's own table: the study's SmolLM2 table, to the last bit."""
    table = load_latency(PROFILED)
    times, n, estimator = recorded_rounds(table)
    again = table_from_rounds(table, range(len(times["dense"])))
    assert (again.dense_s, again.t_attn_s, again.t_mlp_s) == (table.dense_s, table.t_attn_s, table.t_mlp_s)
    assert n == 8 and estimator == "hodges-lehmann"
    assert again.extra["draw"]["rounds"] == list(range(13)) and "times_s" not in again.extra


def test_draws_resample_whole_rounds_seeded_and_prefix_stable():
    table = load_latency(PROFILED)
    a, b = bootstrap_tables(table, 6, seed=3), bootstrap_tables(table, 4, seed=3)
    assert [t.to_dict() for t in a[:4]] == [t.to_dict() for t in b]
    assert len({t.t_mlp_s for t in a}) > 1  # the draws differ
    lo, hi = min(table.extra["times_s"]["dense"]), max(table.extra["times_s"]["dense"])
    for t in a:
        assert lo <= t.dense_s <= hi and 0 < t.t_attn_s < t.dense_s and 0 < t.t_mlp_s < t.dense_s
        again = table_from_rounds(table, t.extra["draw"]["rounds"])
        assert (again.t_attn_s, again.t_mlp_s) == (t.t_attn_s, t.t_mlp_s)
    assert bootstrap_tables(table, 2, seed=4)[0].to_dict() != a[0].to_dict()


def test_a_table_without_rounds_cannot_be_drawn_from():
    with pytest.raises(SprintError, match="recorded rounds"):
        bootstrap_tables(LatencyTable("cpu", "m", 1, 1, 1.0, 0.1, 0.2), 3)
    with pytest.raises(SprintError, match="draws"):
        bootstrap_tables(load_latency(PROFILED), 0)


@pytest.mark.parametrize("name", ["shortgpt", "blockpruner"])
def test_cut_of_one_order_is_what_a_run_under_each_table_removes(name):
    """A baseline's order does not depend on the table: cutting one long order by each table's stopping rule gives
    exactly the removals of a run under that table."""
    tables = [profiled_table(seed=s) for s in range(3)] + [profiled_table(attn=0.03, mlp=0.1)]
    cal = random_ids()
    long_run = prune_model(tiny_model("llama", 6), cal, tables[0], PruneConfig(method=name, target_speedup=1.6),
                           progress=False)
    steps = [[(r.layer, r.kind) for r in long_run.removed[i:i + (2 if name == "shortgpt" else 1)]]
             for i in range(0, len(long_run.removed), 2 if name == "shortgpt" else 1)]
    for table in tables:
        run = prune_model(tiny_model("llama", 6), cal, table, PruneConfig(method=name, target_speedup=1.3),
                          progress=False)
        n = cut(steps, table, 1.3)
        assert [r for step in steps[:n] for r in step] == [(r.layer, r.kind) for r in run.removed]
    with pytest.raises(SprintError, match="does not reach"):
        cut(steps[:1], tables[0], 1.6)
    assert counts([(1, "attn"), (2, "mlp"), (3, "mlp")]) == (1, 2)


def test_ranks_and_spearman():
    assert ranks([3.0, 1.0, 2.0, 1.0]) == [4.0, 1.5, 3.0, 1.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # hand-computed: ranks x = 1..5, y = 2,1,4,3,5 -> d² = 1+1+1+1+0 = 4 -> 1 - 6*4/(5*24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [20, 10, 40, 30, 50]) == pytest.approx(0.8)
    ci = spearman_ci(list(range(30)), [x + (7 if x % 3 else 0) for x in range(30)], n_boot=300)
    assert ci["ci95"][0] <= ci["rho"] <= ci["ci95"][1] and ci["n"] == 30
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 90) == 5


def test_the_committed_profile_is_a_json_object_with_rounds():
    data = json.loads(PROFILED.read_text())
    assert set(data["times_s"]) == {"dense", "attn", "mlp"}
