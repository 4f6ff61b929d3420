"""SPRINT under many tables at once is SPRINT under each table alone, bit for bit."""

import torch

from sprint.analysis.branching import sprint_under_tables
from sprint.measure.table import LatencyTable
from sprint.methods import PruneConfig
from sprint.methods.driver import prune_model
from sprint.model.tiny import tiny_model

from helpers import random_ids


def table(attn, mlp):
    return LatencyTable(device="cpu", model="tiny", prompt_len=8, gen_len=4, dense_s=1.0, t_attn_s=attn, t_mlp_s=mlp)


def test_shared_steps_give_each_table_its_own_run():
    tables = {"a": table(0.05, 0.08), "b": table(0.08, 0.05), "c": table(0.06, 0.06), "d": table(0.03, 0.10),
              "e": table(0.05, 0.081)}
    cfg = PruneConfig(method="sprint", target_speedup=[1.35], beta=2, alpha=3)
    done = {}

    def on_done(key, removals, model):
        assert key not in done
        done[key] = (removals, [layer.mlp.down_proj.weight.detach().clone() for layer in model.model.layers],
                     model.config.sprint_removed)

    steps = sprint_under_tables(tiny_model("llama", 6), random_ids(16, 24), tables, 1.35, cfg, on_done)
    assert set(done) == set(tables)
    lengths = []
    for key, t in tables.items():
        model = tiny_model("llama", 6)
        run = prune_model(model, random_ids(16, 24), t, PruneConfig(method="sprint", target_speedup=[1.35], beta=2,
                                                                      alpha=3), progress=False)
        removals, weights, removed = done[key]
        assert [r.to_dict() for r in removals] == [r.to_dict() for r in run.removed], key
        for w, layer in zip(weights, model.model.layers):
            assert torch.equal(w, layer.mlp.down_proj.weight), key
        assert removed == model.config.sprint_removed
        lengths.append(len(run.removed))
    distinct = {tuple((r.layer, r.kind) for r in done[k][0]) for k in done}
    assert len(distinct) >= 3  # the tables did split
    assert max(lengths) <= steps < sum(lengths)  # and shared what they agreed on
