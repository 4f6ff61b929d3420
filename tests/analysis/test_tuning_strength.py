"""sprint analyze tuning-strength: each setting is one change against the default SPRINT run, its perplexity on
WikiText-2 and the held-out corpus is paired against the default's, and a rerun resumes."""

import pytest
import torch

from sprint.analysis import tuning_strength
from sprint.analysis.tables import tuning_strength_markdown
from sprint.data.calibration import save_calibration
from sprint.errors import SprintError
from sprint.measure.table import load_latency, save_latency
from sprint.methods import PruneConfig
from sprint.methods.driver import prune_model
from sprint.model.loading import load_model

from helpers import profiled_table, random_ids


def test_settings_are_one_change_each_paired_against_the_default(tmp_path, tiny_model_dir, mirror, monkeypatch):
    model = str(tiny_model_dir("llama", layers=5))
    cal, more = tmp_path / "cal.pt", tmp_path / "cal24.pt"
    save_calibration(random_ids(12, 24), cal, {"source": "test", "seed": 0})
    save_calibration(random_ids(24, 24, seed=1), more, {"source": "test", "seed": 1})
    table = tmp_path / "latency.json"
    save_latency(profiled_table(seed=1, rounds=8), table)
    settings = ["tune_ratio=0.5", "ridge=0.1", "method=sprint-t", f"calibration={more}"]
    kw = dict(settings=settings, target=1.25, mirror=mirror, ppl_seq_len=16, ppl_windows=4, eval_batch_size=4,
              prune_settings={"beta": 2, "alpha": 3})
    out = tmp_path / "tuning.json"
    result = tuning_strength.run_tuning_strength(model, str(cal), str(table), out, **kw)
    assert list(result["settings"]) == ["default", *settings]
    for name, row in result["settings"].items():  # each is the run `sprint prune` makes with that one change
        changes = row["changes"]
        net, _ = load_model(model, device="cpu", dtype="float32")
        cfg = PruneConfig(method=changes.get("method", "sprint"), target_speedup=1.25, beta=2, alpha=3,
                          **{k: v for k, v in changes.items() if k in ("tune_ratio", "ridge")})
        run = prune_model(net, torch.load(changes.get("calibration", cal)), load_latency(table), cfg, progress=False)
        assert row["removed"] == [[r.layer, r.kind] for r in run.removed], name
        assert set(row["ppl"]) == {"wikitext2", "hellaswag_gold"}
    assert result["settings"]["method=sprint-t"]["tunings"] == 0
    assert result["settings"]["default"]["vs_default"]["wikitext2"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0}
    text = tuning_strength_markdown(result)
    assert "| ridge=0.1 | 12 x 24 |" in text and f"| calibration={more} | 24 x 24 |" in text

    monkeypatch.setattr(tuning_strength, "time", None)  # resumes: nothing is pruned again (time is read per run)
    assert tuning_strength.run_tuning_strength(model, str(cal), str(table), out, **kw)["settings"] == \
        result["settings"]


@pytest.mark.parametrize("bad", ["tune_ratio", "alpha=3", "ridge=x", "method=shortgpt"])
def test_a_bad_setting_is_named(bad):
    with pytest.raises(SprintError, match="setting"):
        tuning_strength.parse_setting(bad)


def test_a_ridge_weakens_the_tuning_and_zero_is_the_papers_solve():
    from sprint.methods.tuning import solve_normal_equations

    torch.manual_seed(0)
    z = torch.randn(64, 8, dtype=torch.float64)
    g, rhs = z.T @ z, z.T @ torch.randn(64, 3, dtype=torch.float64)
    x0, _, lam0 = solve_normal_equations(g, rhs)
    x1, _, lam1 = solve_normal_equations(g, rhs, min_ridge=0.1)
    assert lam0 == 0.0 and torch.allclose(g @ x0, rhs)
    assert lam1 == pytest.approx(0.1 * g.diagonal().mean().item())
    assert x1.norm() < x0.norm()  # shrunk towards 0
