"""ζ̃ / ζ of every candidate against the damage of its removal, on tiny random models."""

import json
import math

import pytest
import torch

from sprint.analysis.sensitivity import ProbedSprint, correlations, damage, run_sensitivity, step_rows, type_gap
from sprint.measure.table import LatencyTable
from sprint.methods import PruneConfig
from sprint.methods.driver import prune_model
from sprint.model.modeling_sprint import set_removed
from sprint.model.sublayers import SublayerView, sublayer_index
from sprint.model.tiny import tiny_model

from helpers import random_ids

TABLE = LatencyTable(device="cpu", model="tiny", prompt_len=8, gen_len=4, dense_s=1.0, t_attn_s=0.05, t_mlp_s=0.08)


def probed(layers=5, beta=2):
    model = tiny_model("llama", layers)
    cfg = PruneConfig(method="sprint", target_speedup=1.3, beta=beta, alpha=3)
    torch.manual_seed(0)
    view = SublayerView(model, batch_size=cfg.batch_size)
    return model, view, ProbedSprint.from_config(view, random_ids(), TABLE, cfg, progress=False, variant="sprint")


def test_probing_changes_nothing_and_scores_what_the_step_then_removes():
    """Probing before every step leaves the run as it was, and the probe's ζ of the candidate each step removes,
    and its predicted choice, are the step's own."""
    plain = prune_model(tiny_model("llama", 5), random_ids(), TABLE,
                        PruneConfig(method="sprint", target_speedup=1.3, beta=2, alpha=3), progress=False)
    model, view, pruner = probed()
    with torch.inference_mode():
        while TABLE.speedup(*pruner.counts()) < 1.3:
            cands = pruner.probe()
            assert set(cands) == set(pruner.candidates())
            choice = pruner.choice(cands)
            removal = pruner.step()[0]
            assert sublayer_index(removal.layer, removal.kind) == choice
            assert cands[choice].sensitivity == pytest.approx(removal.sensitivity, rel=1e-6)
            assert all(c.pseudo >= c.sensitivity - 1e-9 for c in cands.values())  # tuning never hurts
    assert [(r.layer, r.kind, r.sensitivity) for r in pruner.removed] == \
        [(r.layer, r.kind, r.sensitivity) for r in plain.removed]
    assert pruner.num_tunings == plain.num_tunings


def test_damage_walk_equals_a_whole_model_forward():
    """Each branch of the damage walk is the model with the candidate removed and its tuned rows written in d."""
    model, view, pruner = probed(layers=4)
    ids = {"a": random_ids(4, 16, seed=5), "b": random_ids(3, 16, seed=6)}
    with torch.inference_mode():
        pruner.step()
        cands = pruner.probe()
        base, after = damage(view, pruner.removed_set, cands, ids, untuned=True)
        gone = [(r.layer, r.kind) for r in pruner.removed]

        def nll(x):
            logits = model(input_ids=x, use_cache=False).logits
            return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                     x[:, 1:].reshape(-1)).item()

        for g, x in ids.items():
            assert base[g] == pytest.approx(nll(x), rel=1e-5)
        for s in (min(cands), max(cands)):
            c = cands[s]
            w = view.down_proj(c.tuned_layer).weight
            old = w.clone()
            set_removed(model, gone + [(s // 2, "attn" if s % 2 == 0 else "mlp")])
            for g, x in ids.items():
                assert after[s][g + " untuned"] == pytest.approx(nll(x), rel=1e-5)
            w[c.rows] = c.weight.to(w.dtype)
            for g, x in ids.items():
                assert after[s][g] == pytest.approx(nll(x), rel=1e-5)
            w.copy_(old)
            set_removed(model, gone)
        assert torch.equal(view.down_proj(cands[max(cands)].tuned_layer).weight, old)  # the walk restored d


def test_type_gap_reads_a_constant_factor():
    zeta = [0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4]
    kinds = ["attn"] * 4 + ["mlp"] * 4
    harm = [z ** 1.5 * (3.0 if k == "mlp" else 1.0) for z, k in zip(zeta, kinds)]
    gap = type_gap(zeta, harm, kinds)
    assert gap["mlp_over_attn"] == pytest.approx(3.0) and gap["slope"] == pytest.approx(1.5)
    assert math.isnan(type_gap(zeta[:4], harm[:4], kinds[:4])["mlp_over_attn"])


def test_run_writes_candidates_correlations_and_figures(tmp_path, monkeypatch):
    from sprint.analysis import figures, sensitivity
    from sprint.analysis.tables import sensitivity_markdown

    monkeypatch.setattr(sensitivity, "wikitext_windows", lambda tok, mirror, seq_len, n: random_ids(n, seq_len, 9))
    out = tmp_path / "sens.json"
    result = run_sensitivity("tiny", random_ids(), "none.pt", "none.json", out, steps=(1, 3), wiki_windows=4,
                             calibration_windows=6,
                             prune_settings={"beta": 2, "alpha": 3}, load=lambda: (tiny_model("llama", 5), None),
                             table=TABLE)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["damage_windows"] == {"calibration": 6, "wikitext2": 4, "seq_len": 24}
    first, later = result["steps"]
    assert len(first["candidates"]) == 9 and len(later["candidates"]) == 7 and len(later["removed_before"]) == 2
    for st in result["steps"]:
        c = st["correlations"]
        assert set(c) == {"all", "attn", "mlp", "type_gap"}
        assert -1 <= c["all"]["zeta ~ calibration"]["rho"] <= 1
        assert c["attn"]["n"] + c["mlp"]["n"] == c["all"]["n"]
        rows = st["candidates"]
        assert sorted(r["rank_sensitivity"] for r in rows) == list(range(1, len(rows) + 1))
    assert "Spearman" in sensitivity_markdown(result)
    for draw in (figures.scatter_figure, figures.fig3b_figure):
        png = draw(result, tmp_path / f"{draw.__name__}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
