"""sprint.pipeline.tracking: stage runs in a temporary SQLite store, read back with MlflowClient."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

from sprint.pipeline import tracking  # noqa: E402

ENV_KEYS = (tracking.PARENT_ENV, tracking.GROUP_ENV, tracking.TAGS_ENV, tracking.ENABLE_ENV, "MLFLOW_EXPERIMENT_NAME")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One SQLite store for the module (creating its schema takes seconds)."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture
def uri(store, monkeypatch) -> str:
    """A clean environment pointing at the module's store, with a fresh experiment per test."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"test-{uuid.uuid4().hex[:8]}")
    monkeypatch.chdir(store)  # artifacts land in ./mlruns of the store folder
    return uri


def _runs(uri: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"])
    assert exp is not None, "the experiment was not created"
    return client.search_runs([exp.experiment_id])


def test_params_metrics_and_artifacts_land(uri, tmp_path):
    art = tmp_path / "pruning.json"
    art.write_text('{"removed": []}\n')
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "a.csv").write_text("x\n1\n")
    params = {"model": "data/models/m", "method": "sprint", "target_speedup": "1.2,1.4", "seed": 0,
              "long": "x" * 7000, "targets": [1.2, 1.4], "missing": None}
    with tracking.stage_run("prune", params) as run:
        run.log_metrics({"estimated_speedup": 1.41, "num_removed": 7, "flag": True, "note": "not a number"})
        run.log_params({"calibration_source": "wikitext2-valid (offline mirror)", "seed": 0})
        run.log_artifact(art)
        run.log_artifact(folder)
        run.log_artifact(tmp_path / "does-not-exist.json")  # a warning, not an error

    (r,) = _runs(uri)
    assert r.info.status == "FINISHED"
    assert r.info.run_name == "prune/sprint/x1.4/seed0"
    p = r.data.params
    assert p["method"] == "sprint" and p["seed"] == "0" and p["target_speedup"] == "1.2,1.4"
    assert p["targets"] == "1.2,1.4" and p["missing"] == "None"
    assert p["calibration_source"] == "wikitext2-valid (offline mirror)"
    assert 0 < len(p["long"]) <= 6000  # MLflow truncates values past its limit
    assert r.data.metrics == {"estimated_speedup": 1.41, "num_removed": 7.0, "flag": 1.0}
    t = r.data.tags
    assert t["sprint.stage"] == "prune" and t["sprint.run_group"] == "standalone"
    assert t["sprint.method"] == "sprint" and t["sprint.seed"] == "0"
    assert "mlflow.parentRunId" not in t
    client = MlflowClient(tracking_uri=uri)
    names = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert "pruning.json" in names
    assert "report" in names
    assert [a.path for a in client.list_artifacts(r.info.run_id, "report")] == ["report/a.csv"]


def test_children_nest_under_the_pipeline_run(uri, monkeypatch):
    parent, group = tracking.start_pipeline_run({"base": {"seeds": [0, 1]}, "prune": {"alpha": 8}}, "group-1")
    assert parent and group == "group-1"
    monkeypatch.setenv(tracking.PARENT_ENV, parent)
    monkeypatch.setenv(tracking.GROUP_ENV, group)
    with tracking.stage_run("calibrate", {"model": "m", "seed": 0}):
        pass
    monkeypatch.setenv(tracking.TAGS_ENV, "sprint.model=smollm2-135m")
    params = {"model": "results/m/pruned/sprint/seed0/x1.2", "method": "sprint", "target_speedup": 1.2, "seed": 0}
    with tracking.stage_run("evaluate", params) as run:
        run.log_metrics({"mean_accuracy": 0.5})
    # A second invocation with the same group resumes the same parent (e.g. the Snakemake calls of a dvc repro).
    again, _ = tracking.start_pipeline_run(None, "group-1")
    assert again == parent
    tracking.end_pipeline_run(parent, "FINISHED")

    runs = {r.info.run_id: r for r in _runs(uri)}
    assert runs[parent].info.status == "FINISHED"
    assert runs[parent].data.tags["sprint.stage"] == "pipeline"
    assert runs[parent].data.params["base.seeds"] == "0,1" and runs[parent].data.params["prune.alpha"] == "8"
    children = [r for rid, r in runs.items() if rid != parent]
    assert len(children) == 2
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent
        assert child.data.tags["sprint.run_group"] == "group-1"
    by_stage = {c.data.tags["sprint.stage"]: c for c in children}
    assert by_stage["calibrate"].info.run_name == "calibrate/seed0"
    assert by_stage["evaluate"].info.run_name == "evaluate/sprint/x1.2/seed0"
    assert by_stage["evaluate"].data.tags["sprint.model"] == "smollm2-135m"
    grouped = MlflowClient(tracking_uri=uri).search_runs(
        [runs[parent].info.experiment_id], filter_string="tags.`sprint.run_group` = 'group-1'")
    assert len(grouped) == 3


def test_disabled_is_a_no_op(tmp_path, monkeypatch):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    db = tmp_path / "never.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.setenv(tracking.ENABLE_ENV, "0")
    monkeypatch.chdir(tmp_path)
    with tracking.stage_run("prune", {"method": "sprint"}) as run:
        run.log_metrics({"a": 1.0})
        run.log_params({"b": 2})
        run.log_artifact(tmp_path)
        run.set_tags({"c": 3})
        assert run.run_id is None
    assert tracking.start_pipeline_run({"a": 1}, "g") == (None, "g")
    tracking.end_pipeline_run(None)
    assert not db.exists() and not (tmp_path / "mlruns").exists()


def test_failure_marks_the_run_failed_and_reraises(uri):
    with pytest.raises(ValueError, match="boom"):
        with tracking.stage_run("evaluate", {"model": "data/models/m", "method": "dense"}) as run:
            run.log_metrics({"partial": 1.0})
            raise ValueError("boom")
    (r,) = _runs(uri)
    assert r.info.status == "FAILED"
    assert r.info.run_name == "evaluate/dense"
    assert r.data.tags["sprint.error"] == "ValueError: boom"
    assert r.data.metrics == {"partial": 1.0}


def test_sigterm_marks_the_run_killed_and_exits_143(uri):
    """scancel, a Slurm time limit or preemption send SIGTERM: the stage's run ends KILLED, not FAILED or RUNNING
    forever, and the process exits as a SIGTERM-killed one would (143); the previous handler is restored."""
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        with tracking.stage_run("prune", {"method": "sprint", "seed": 0}) as run:
            run.log_metrics({"partial": 1.0})
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
    assert stopped.value.code == 143
    assert signal.getsignal(signal.SIGTERM) == before
    (r,) = _runs(uri)
    assert r.info.status == "KILLED"
    assert r.data.tags["sprint.error"] == "Terminated: terminated by SIGTERM"


def test_an_unreachable_store_costs_a_warning_not_the_stage(tmp_path, monkeypatch, caplog):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker}/sub/mlflow.db")  # a path under a file
    ran = False
    with tracking.stage_run("report", {"results": "results"}) as run:
        run.log_metrics({"a": 1})
        ran = True
    assert ran and run.run_id is None
    assert "tracking unavailable" in caplog.text


def test_parallel_processes_share_one_new_sqlite_store(tmp_path):
    """Parallel Snakemake jobs: concurrent first use of a new SQLite store, then concurrent writes."""
    script = textwrap.dedent("""
        import sys
        from sprint.pipeline.tracking import stage_run
        with stage_run("prune", {"method": "sprint", "seed": int(sys.argv[1])}) as run:
            for i in range(5):
                run.log_metrics({f"m{i}": float(i)})
            run.log_params({f"p{i}": i for i in range(20)})
    """)
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "MLFLOW_EXPERIMENT_NAME": "parallel",
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")})
    procs = [subprocess.Popen([sys.executable, "-c", script, str(seed)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for seed in range(4)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert not any("tracking unavailable" in o or "could not" in o for o in outputs), outputs
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("parallel").experiment_id])
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1", "2", "3"]
    assert all(r.info.status == "FINISHED" and len(r.data.metrics) == 5 and len(r.data.params) == 22 for r in runs)


@pytest.mark.parametrize(("stage", "params", "name"), [
    ("prune", {"method": "sleb", "target_speedup": "1.1,1.6", "seed": 2}, "prune/sleb/x1.6/seed2"),
    ("evaluate", {"model": "results/m/pruned/sprint/seed1/x1.2", "method": "sprint", "target_speedup": 1.2,
                  "seed": 1, "eval_seed": 0}, "evaluate/sprint/x1.2/seed1"),
    ("evaluate", {"model": "data/models/m", "method": "dense", "target_speedup": 1.0, "seed": None}, "evaluate/dense"),
    ("prune", {"method": "wanda", "target_speedup": "", "point": "2of4", "seed": 0}, "prune/wanda/2of4/seed0"),
    ("evaluate", {"method": "sparsegpt", "target_speedup": None, "point": "u50", "seed": 1},
     "evaluate/sparsegpt/u50/seed1"),
    ("calibrate", {"model": "m", "seed": 3}, "calibrate/seed3"),
    ("profile", {"model": "m", "prompt_len": 64, "seed": 0}, "profile"),
    ("speedup", {"model": "m", "checkpoints": 4}, "speedup"),
    ("report", {"results": "results"}, "report"),
])
def test_run_names_are_the_workflows(stage, params, name):
    """One naming scheme: the names the rules' jobs get, e.g. prune/{method}/x{largest target}/seed{seed}."""
    assert tracking.run_name(stage, params) == name


def test_the_experiment_opens_on_its_runs(uri):
    """MLflow 3 opens an experiment without a kind on its GenAI overview: ours is tagged as model development."""
    with tracking.stage_run("report", {"results": "r"}):
        pass
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"])
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    client.set_experiment_tag(exp.experiment_id, tracking.EXPERIMENT_KIND_TAG, "genai_development")
    with tracking.stage_run("report", {"results": "r"}):
        pass  # a kind set by hand is kept
    assert client.get_experiment(exp.experiment_id).tags[tracking.EXPERIMENT_KIND_TAG] == "genai_development"


def test_chance_metrics_of_a_results_folder(tmp_path):
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from helpers import MODEL, metrics_record, write_json

    record = metrics_record("dense", None, 0, 0.8, 1.0)
    for t in record["tasks"].values():
        t["chance"] = 0.5
    write_json(tmp_path / MODEL / "metrics" / "dense.json", record)
    from sprint.report.load import chance_metrics

    got = chance_metrics(tmp_path)
    assert got[f"{MODEL}/chance/piqa"] == 0.5 and got[f"{MODEL}/informative/piqa"] == 1.0
    assert abs(got[f"{MODEL}/informative_accuracy/dense/x1/seed0"] - 0.8) < 1e-12


def test_the_report_logs_the_llamacpp_speedup_beside_the_measured_one(uri, tmp_path, monkeypatch):
    """The report run logs each model's llama.cpp speedup, and adds it to the latest finished evaluate run of that
    model (beside its measured speedup), so that runs compare on it; a model not exported gets none."""
    import argparse
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from helpers import MODEL, llamacpp_record, metrics_record, pruning_record, write_json

    from sprint.pipeline import commands

    root = tmp_path / "results"
    write_json(root / MODEL / "metrics" / "dense.json", metrics_record("dense", None, 0, 0.75, 1.003))
    for seed in (0, 1):
        write_json(root / MODEL / "pruned" / "sprint" / f"seed{seed}" / "x1.2" / "pruning.json",
                   pruning_record("sprint", 1.2, seed, [(2, "attn")]))
        write_json(root / MODEL / "metrics" / "sprint" / f"seed{seed}" / "x1.2.json",
                   metrics_record("sprint", 1.2, seed, 0.6, 1.15))
    write_json(root / MODEL / "llamacpp.json",
               llamacpp_record({("sprint", "x1.2", 0): (1.23, 1.21, 1.25)}, control=(1.004, 0.990, 1.020)))
    monkeypatch.setenv(tracking.TAGS_ENV, f"sprint.model={MODEL}")
    ids = {}
    for name, params in (("old", {"method": "sprint", "point": "x1.2", "seed": 0}),
                         ("seed0", {"method": "sprint", "point": "x1.2", "seed": 0}),
                         ("seed1", {"method": "sprint", "point": "x1.2", "seed": 1}),
                         ("dense", {"method": "dense", "point": "x1"})):
        with tracking.stage_run("evaluate", params) as run:
            run.log_metrics({"measured_speedup": 1.15})
        ids[name] = run.run_id
    with pytest.raises(RuntimeError):  # a failed run, the latest: not the model's evaluation
        with tracking.stage_run("evaluate", {"method": "sprint", "point": "x1.2", "seed": 0}):
            raise RuntimeError("killed")
    monkeypatch.delenv(tracking.TAGS_ENV)
    commands.report(argparse.Namespace(results=str(root), metrics=None, llamacpp=None,
                                       output=str(root / "report.md")))
    client = MlflowClient(tracking_uri=uri)
    seed0 = client.get_run(ids["seed0"]).data.metrics
    assert seed0["llamacpp_speedup"] == pytest.approx(1.23) and seed0["measured_speedup"] == 1.15
    assert (seed0["llamacpp_speedup_lo"], seed0["llamacpp_speedup_hi"]) == pytest.approx((1.21, 1.25))
    assert client.get_run(ids["dense"]).data.metrics["llamacpp_speedup"] == pytest.approx(1.004)
    assert "llamacpp_speedup" not in client.get_run(ids["old"]).data.metrics  # an older evaluation of the model
    assert "llamacpp_speedup" not in client.get_run(ids["seed1"]).data.metrics  # not exported
    report = next(r for r in _runs(uri) if r.data.tags.get("sprint.stage") == "report").data.metrics
    assert report[f"{MODEL}/llamacpp_speedup/sprint/x1.2/seed0"] == pytest.approx(1.23)
    assert report[f"{MODEL}/llamacpp_speedup/dense/x1/seed0_lo"] == pytest.approx(0.990)
    assert not [k for k in report if "llamacpp" in k and "seed1" in k]
