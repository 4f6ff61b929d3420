"""SPRINT's algorithmic guarantees on tiny random models: exact checkpointing, safe tuning, the stopping rule."""

import pytest
import torch

from sprint.model.tiny import tiny_model
from sprint.errors import SprintError
from sprint.measure.table import LatencyTable
from sprint.methods import SUBLAYER_METHODS, PruneConfig
from sprint.methods.driver import check_reachable, prune_model
from sprint.methods.tuning import TuningStats, gram, solve_normal_equations, tune_rows

from helpers import random_ids as calibration

LATENCY = LatencyTable(device="cpu", model="tiny", prompt_len=8, gen_len=4, dense_s=1.0, t_attn_s=0.05, t_mlp_s=0.08)


def run(method, target=1.45, layers=6, **kw):
    model = tiny_model("llama", layers)
    pruner = prune_model(model, calibration(), LATENCY, PruneConfig(method=method, target_speedup=target, **kw),
                         progress=False)
    return model, pruner


@pytest.mark.parametrize("reference,distance", [("dense", "frobenius"), ("current", "l1")])
def test_checkpointing_is_exact(reference, distance):
    """β ≥ #candidates: SPRINT (checkpoints, cached scores) and SPRINT-e (recompute all) agree to 1e-5."""
    kw = dict(beta=100, alpha=4, reference=reference, distance=distance)
    m1, fast = run("sprint", **kw)
    m2, full = run("sprint-e", **kw)
    assert [(r.layer, r.kind) for r in fast.removed] == [(r.layer, r.kind) for r in full.removed]
    assert len(fast.removed) >= 4
    for a, b in zip(fast.removed, full.removed):
        assert a.sensitivity == pytest.approx(b.sensitivity, rel=1e-5, abs=1e-7)
        assert a.importance == pytest.approx(b.importance, rel=1e-5, abs=1e-7)
        assert a.tuned_layer == b.tuned_layer
    assert fast.num_tunings < full.num_tunings  # cached scores were reused
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


@pytest.mark.parametrize("reference,distance", [("dense", "frobenius"), ("current", "l1")])
def test_what_is_held_for_later_tunings_changes_nothing_but_the_walks(monkeypatch, reference, distance):
    """Saved activations (within HELD_BYTES) spare the re-walks of candidates tuned later; any budget, including
    none (Ẑ recomputed, every late candidate re-walked), gives bitwise the same pruned model."""
    import sprint.methods.sprint

    walks = []
    walk = sprint.methods.sprint.SprintPruner._walk
    monkeypatch.setattr(sprint.methods.sprint.SprintPruner, "_walk",
                        lambda self, targets, tuned, **kw: walks.append(tuned) or walk(self, targets, tuned, **kw))
    kw = dict(beta=2, alpha=3, reference=reference, distance=distance)
    held_model, held = run("sprint", **kw)
    assert held.hold_z and not any(walks)  # every tuning came from what its scoring walk saved
    for budget in (0, 150_000):  # none; a few candidates' Y and Ẑ of the tiny model
        monkeypatch.setattr(sprint.methods.sprint, "HELD_BYTES", budget)
        walks.clear()
        model, other = run("sprint", **kw)
        assert other.hold_z == (budget > 0)
        if budget == 0:
            assert any(walks)  # cached candidates chosen in a later iteration were walked again
        assert [(r.layer, r.kind, r.tuned_layer, r.sensitivity) for r in other.removed] == \
            [(r.layer, r.kind, r.tuned_layer, r.sensitivity) for r in held.removed]
        assert other.num_tunings == held.num_tunings
        for p, q in zip(model.parameters(), held_model.parameters()):
            assert torch.equal(p, q)


def test_candidate_selection_tunes_fewer():
    _, fast = run("sprint", beta=2)
    _, full = run("sprint-e")
    assert fast.num_tunings < full.num_tunings


def test_variants_differ_where_they_should():
    _, t = run("sprint-t")
    assert t.num_tunings == 0 and all(r.tuned_layer is None for r in t.removed)
    _, l = run("sprint-l")
    assert all(r.importance == pytest.approx(r.sensitivity) for r in l.removed)
    _, s = run("sprint")
    for r in s.removed:
        saving = LATENCY.t_attn_s if r.kind == "attn" else LATENCY.t_mlp_s
        assert r.importance == pytest.approx(r.sensitivity / saving)
        assert r.tuned_layer is not None and r.tuned_layer >= r.layer
    last_mlp = (5, "mlp")
    assert last_mlp not in {(r.layer, r.kind) for r in s.removed}


@pytest.mark.parametrize("method", SUBLAYER_METHODS)
@pytest.mark.parametrize("target", [1.2, 1.4])
def test_every_method_meets_the_estimated_target(method, target):
    _, p = run(method, target=target)
    assert LATENCY.speedup(*p.counts()) >= target
    # minimal: one removal fewer would miss it
    last = p.removed[-1]
    n_attn, n_mlp = p.counts()
    per_step = 2 if method in ("shortgpt", "sleb") else 1
    if per_step == 1:
        n_attn, n_mlp = (n_attn - 1, n_mlp) if last.kind == "attn" else (n_attn, n_mlp - 1)
        assert LATENCY.speedup(n_attn, n_mlp) < target


def test_tuning_never_increases_error_and_survives_rank_deficiency():
    torch.manual_seed(0)
    inner, outer = 48, 16
    for tokens in (20, 500):  # 20 < inner: rank-deficient Gram matrix
        z = torch.randn(tokens, inner)
        z[:, 5] = 0.0  # a dead neuron: an exactly singular direction
        z[:, 7] = z[:, 6]  # duplicated features
        w = torch.randn(outer, inner)
        b = z @ torch.randn(inner, outer) + 0.1 * torch.randn(tokens, outer)
        stats = TuningStats(inner, outer)
        stats.add(z[: tokens // 2], b[: tokens // 2])
        stats.add(z[tokens // 2 :], b[tokens // 2 :])
        before = (z.double() @ w.double().T - b.double()).pow(2).sum(0)
        result = tune_rows(stats, w, ratio=0.75, errors_before=before)
        assert torch.allclose(stats.row_errors(w), before, rtol=1e-6)
        assert torch.isfinite(result.weight).all()
        assert result.error_sq <= result.error_sq_before + 1e-9
        # the error formula from the statistics matches the direct computation
        w2 = w.double().clone()
        w2[result.rows] = result.weight
        direct = (z.double() @ w2.T - b.double()).pow(2).sum().item()
        assert result.error_sq == pytest.approx(direct, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("columns", [1, 7, 64])
def test_gram_from_its_upper_blocks_is_the_full_product(columns):
    z = torch.randn(50, columns, generator=torch.Generator().manual_seed(columns))
    assert torch.allclose(gram(z), z.T @ z, rtol=1e-6, atol=1e-5)


def test_solver_handles_singular_gram():
    g = torch.zeros(4, 4, dtype=torch.float64)
    g[0, 0] = 1.0
    x, _, ridge = solve_normal_equations(g, torch.ones(4, 2, dtype=torch.float64))
    assert torch.isfinite(x).all() and ridge > 0


def test_unreachable_target_fails_before_work():
    with pytest.raises(SprintError, match="unreachable with sleb"):
        check_reachable("sleb", 6, LATENCY, [3.0])
    with pytest.raises(SprintError, match="unreachable"):
        run("sprint", target=50.0)


@pytest.mark.parametrize("bad,match", [
    (dict(method="magic"), "unknown method 'magic'"),
    (dict(target_speedup=1.0), "must be > 1"),
    (dict(tune_ratio=0.0), "tune_ratio"),
    (dict(alpha=0), "alpha"),
])
def test_bad_config(bad, match):
    cfg = dict(method="sprint", target_speedup=1.3) | bad
    with pytest.raises(SprintError, match=match):
        PruneConfig(**cfg).validate()


def test_few_tokens_warns(caplog):
    model = tiny_model("llama", 4)
    with caplog.at_level("WARNING", logger="sprint"):
        prune_model(model, calibration(n=2, t=8), LATENCY, PruneConfig(method="sprint", target_speedup=1.05),
                    progress=False)
    assert "calibration tokens" in caplog.text


def test_perplexity_baselines_can_score_on_fewer_windows():
    model = tiny_model("llama", 6)
    cfg = PruneConfig(method="blockpruner", target_speedup=1.2, ppl_windows=3)
    pruner = prune_model(model, calibration(), LATENCY, cfg, progress=False)
    assert pruner.calibration.shape[0] == 3 and cfg.as_params()["ppl_windows"] == 3
    assert LATENCY.speedup(*pruner.counts()) >= 1.2
