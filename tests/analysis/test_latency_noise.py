"""SPRINT and the baselines under drawn latency tables, end to end on a tiny model."""

import json

import pytest
import torch

from sprint.analysis import figures, latency_noise
from sprint.analysis.tables import latency_draws_markdown
from sprint.measure.draws import bootstrap_tables
from sprint.data.calibration import save_calibration
from sprint.errors import SprintError
from sprint.measure.table import load_latency, save_latency
from sprint.methods import PruneConfig
from sprint.methods.driver import prune_model
from sprint.model.loading import load_model

from helpers import profiled_table, random_ids

METHODS = ("sprint", "shortgpt", "blockpruner")


@pytest.fixture
def setup(tmp_path, tiny_model_dir, mirror):
    model = str(tiny_model_dir("llama", layers=5))
    cal = tmp_path / "cal.pt"
    save_calibration(random_ids(12, 24), cal, {"source": "test", "seed": 0})
    table = tmp_path / "latency.json"
    save_latency(profiled_table(seed=1, rounds=8), table)
    return model, cal, table, mirror


def run(setup, out, **kw):
    model, cal, table, mirror = setup
    settings = dict(k=3, seed=0, target=1.25, methods=METHODS, mirror=mirror, ppl_seq_len=16, ppl_windows=4,
                    eval_batch_size=4, prune_settings={"beta": 2, "alpha": 3})
    settings.update(kw)
    return latency_noise.run_latency_draws(model, torch.load(cal), str(cal), str(table), out, **settings)


def test_each_draw_removes_what_a_run_under_its_table_removes(setup, tmp_path, monkeypatch):
    model, cal, table, _ = setup
    result = run(setup, tmp_path / "draws.json")
    draws = bootstrap_tables(load_latency(table), 3, seed=0)
    assert [d["index"] for d in result["draws"]] == ["point", 0, 1, 2]
    for row in result["draws"]:
        tab = load_latency(table) if row["index"] == "point" else draws[row["index"]]
        assert row["t_mlp_s"] == tab.t_mlp_s
        for name in METHODS:
            net, _ = load_model(model, device="cpu", dtype="float32")
            run_ = prune_model(net, torch.load(cal), tab, PruneConfig(method=name, target_speedup=1.25, beta=2,
                                                                     alpha=3), progress=False)
            assert row["methods"][name]["removed"] == [[r.layer, r.kind] for r in run_.removed], (row["index"], name)
        assert sorted(e["rank"] for e in row["methods"].values()) == [1, 2, 3]
        assert row["sprint_rank"] == row["methods"]["sprint"]["rank"]
    assert result["sprint_steps"] <= sum(len(r["removed"]) for r in result["sprint_runs"].values())
    s = result["summary"]
    assert s["draws"] == 3 and sum(s["sprint_rank"].values()) == 3
    assert set(s["methods"]) == set(METHODS)
    table_md = latency_draws_markdown(result)
    assert "| point |" in table_md and "SPRINT's rank" in table_md
    png = figures.latency_draws_figure(result, tmp_path / "draws.png")
    assert png.read_bytes()[:4] == b"\x89PNG"

    # a rerun with the same settings resumes: nothing is pruned or evaluated again
    monkeypatch.setattr(latency_noise, "sprint_under_tables", lambda *a, **k: pytest.fail("pruned again"))
    monkeypatch.setattr(latency_noise, "baseline_order", lambda *a, **k: pytest.fail("ordered again"))
    monkeypatch.setattr(latency_noise, "perplexity_record", lambda *a, **k: pytest.fail("evaluated again"))
    assert run(setup, tmp_path / "draws.json")["draws"] == result["draws"]


def test_a_baseline_order_may_come_from_a_matching_record(setup, tmp_path):
    model, cal, table, _ = setup
    computed = run(setup, tmp_path / "a.json", methods=("shortgpt",), k=2)
    steps = computed["orders"]["shortgpt"]["steps"]
    record = {"method": "shortgpt", "model": model,
              "params": {"seed": 0, "calibration_n": 12, "calibration_seq_len": 24},
              "removed": [{"layer": layer, "kind": kind} for step in steps for layer, kind in step]}
    path = tmp_path / "pruning.json"
    path.write_text(json.dumps(record))
    again = run(setup, tmp_path / "b.json", methods=("shortgpt",), k=2, records={"shortgpt": str(path)})
    assert [d["methods"] for d in again["draws"]] == [d["methods"] for d in computed["draws"]]
    assert again["orders"]["shortgpt"]["record"] == str(path)
    record["params"]["calibration_n"] = 16
    path.write_text(json.dumps(record))
    with pytest.raises(SprintError, match="does not match"):
        run(setup, tmp_path / "c.json", methods=("shortgpt",), k=2, records={"shortgpt": str(path)})
    record["params"]["calibration_n"] = 12
    record["removed"] = record["removed"][:2]
    path.write_text(json.dumps(record))
    with pytest.raises(SprintError, match="stops before"):
        run(setup, tmp_path / "d.json", methods=("shortgpt",), k=2, records={"shortgpt": str(path)})


def test_command_line_writes_json_markdown_and_png(setup, tmp_path):
    import os
    import subprocess
    import sys

    model, cal, table, mirror = setup
    out = tmp_path / "an" / "draws.json"
    env = {**os.environ, "SPRINT_MLFLOW": "0", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "sprint", "analyze", "latency-draws", "--model", model, "--calibration", str(cal),
         "--latency", str(table), "--mirror", str(mirror), "--target-speedup", "1.25", "--draws", "2",
         "--methods", "sprint", "shortgpt", "--beta", "2", "--alpha", "3", "--eval-windows", "3",
         "--eval-seq-len", "16", "--output", str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["k"] == 2 and len(result["draws"]) == 3 and result["prune_settings"]["beta"] == 2
    assert "SPRINT's rank" in (tmp_path / "an" / "draws.md").read_text()
    assert (tmp_path / "an" / "draws.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "an" / "draws.png").unlink()
    again = subprocess.run([sys.executable, "-m", "sprint", "analyze", "figures", "--input", str(out)],
                           capture_output=True, text=True, env=env)
    assert again.returncode == 0 and (tmp_path / "an" / "draws.png").is_file(), again.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-m", "sprint", "analyze", "latency-draws", "--model", model,
                          "--calibration", str(cal), "--latency", str(table), "--orders-from", "sleb",
                          "--output", str(tmp_path / "x.json")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "METHOD=PRUNING_JSON" in bad.stderr
