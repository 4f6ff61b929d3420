"""The Slurm profile against a real Slurm (issue 28): the tiny pipeline through `--profile workflow/profiles/slurm`
on the single-node cluster of scripts/slurm_local.sh, checked against the same pipeline through the local profile.

- every rule but the localrules ran as a Slurm job, with the partition, account, time limit, memory and CPUs the
  profile asks for (sacct): for the prune, profile, speedup and evaluate jobs, the memory and time limit of the plan
  (sprint.pipeline.resources), as printed by the run;
- SPRINT's prune job, cancelled after its first removal (scancel), is submitted again by the profile's retries and
  resumes from its journal; ShortGPT's, preempted by a job of a higher-priority partition, is requeued by Slurm; the
  run completes; the cancelled attempt's MLflow run ends KILLED;
- the deterministic outputs equal the local run's (byte for byte, or but for the fields that time the run: see
  RUN_FIELDS);
- MLflow and DVC record the run as they do locally.

Run with `pytest -m slurm tests/pipeline/test_slurm.py` after `sudo scripts/slurm_local.sh start` (skipped when no
cluster answers, and left out of the default suite). 11-21 minutes on this 2-core machine shared with other work:
the Slurm run 8-12 minutes (with the 2-minute wait of the requeued job), the local run 3-8.

The profile asks for more than this machine has (prune: 16 CPUs; 32 GB by default), which sbatch refuses, so the
test runs it with a second profile that only fits it to the node: partition and account of the local cluster,
memory and CPUs capped at what the node has, and a 5 s first status check instead of 40 s. Everything else, the
plan's resources included, is the profile users get.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from test_workflow import BIN, MIRROR, REPO, base_env, job_stats, make_tiny_llama, make_workdir, run, tiny_params

PARTITION, ACCOUNT = "local", "sprint"  # scripts/slurm_local.sh's (and its partition `urgent`, which preempts)
MEM_CAP_MB = 3000  # each tiny job peaks at 0.5-1.5 GB (sacct MaxRSS)
PROFILE = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
LOCAL_RULES = {"datasets", "model", "all"}  # run on the submitting node by design (localrule: True, or no command)
SLURM_RULES = ["profile", "calibrate", "evaluate_dense", "prune", "prune", "evaluate", "evaluate", "report"]
# The latency table is given, not measured, so that both runs prune against the same one (a measured table differs
# between any two runs); evaluate still times every checkpoint against the dense model through Slurm.
TABLE = {"dense_s": 6.0, "t_attn_s": 0.5, "t_mlp_s": 0.7, "prompt_len": 8, "gen_len": 8}
TARGET = 1.2  # two sublayers of the table above (6.0 / (6.0 - 0.7 - 0.5) = 1.25)
JOURNAL = "results/tiny/journals/sprint/seed0"  # SPRINT's prune job's journal, outside its output folder

# What the two runs must share. Byte-identical: the data snapshot, the calibration windows, the latency table and
# every file of each pruned checkpoint (weights, config, tokenizer) except pruning.json. JSON records equal once the
# fields that measure the run itself are dropped: pruning.json's wall time and peak RSS; the metrics' measured
# speedup and latencies (timed on a shared CPU, they differ between any two runs, local or not). The report's tables
# (results/report/*.csv) equal without their columns of those measurements. Left out: the report's text and plots
# (they show the measured speedups), results/benchmarks and the report's benchmarks.csv (Snakemake's timings of each
# job), results/logs (timestamps).
RUN_FIELDS = {"wall_time_s", "peak_rss_mb", "measured_speedup", "measured_speedup_ci", "latency_s",
              "dense_latency_s", "speedup"}
RUN_COLUMNS = re.compile(r"measured_speedup|speedup_spread|rel_error|pruning_time|peak_rss")


def _sh(*cmd: str, check: bool = True) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc.stdout


def _cluster() -> tuple[int, int] | None:
    """(CPUs, memory MB) of the partition's node when a Slurm controller answers and sacct works, else None."""
    if not shutil.which("sinfo") or not shutil.which("sacct"):
        return None
    try:
        nodes = _sh("sinfo", "-h", "-p", PARTITION, "-o", "%a %c %m %T").split()
        _sh("sacct", "-X", "-n", "-j", "1")
    except (AssertionError, subprocess.TimeoutExpired):
        return None
    if len(nodes) < 4 or nodes[0] != "up" or not re.match(r"idle|mixed|alloc", nodes[3]):
        return None
    return int(nodes[1]), int(nodes[2].rstrip("+"))


CLUSTER = _cluster()
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(MIRROR is None, reason="no offline data mirror (SPRINT_DATA_MIRROR or ../shared/data)"),
    pytest.mark.skipif(CLUSTER is None, reason=f"no Slurm cluster with partition '{PARTITION}' answers "
                                               "(start one with `sudo scripts/slurm_local.sh start`)"),
]


@pytest.fixture(scope="module", autouse=True)
def _only_when_selected(request):
    """A quarter of an hour of two pipeline runs: only with `-m slurm`, never in the default suite."""
    if "slurm" not in (request.config.getoption("markexpr") or "").replace("not slurm", ""):
        pytest.skip("the Slurm test runs only when selected: pytest -m slurm")


# ----------------------------------------------------------------------------------------------- the two runs


def fitted_profile(cpus: int, mem_mb: int) -> dict:
    """The Slurm profile's resources fitted to the test node: the partition and account of the local cluster,
    memory and CPUs capped at what the node has; runtimes, GPUs and everything else as the profile has them.
    (A second --profile replaces whole keys, so the fitted keys are complete copies.)"""

    def fit(resources: dict) -> dict:
        out = dict(resources)
        if "mem_mb" in out:
            out["mem_mb"] = min(out["mem_mb"], mem_mb)
        if "cpus_per_task" in out:
            out["cpus_per_task"] = min(out["cpus_per_task"], cpus)
        return out

    return {
        "default-resources": {**fit(PROFILE["default-resources"]), "slurm_partition": PARTITION,
                              "slurm_account": ACCOUNT},
        "set-resources": {rule: fit(res) for rule, res in PROFILE["set-resources"].items()},
        "set-threads": {rule: min(n, cpus) for rule, n in PROFILE["set-threads"].items()},
        "slurm-init-seconds-before-status-checks": 5,
    }


PLANNED_STAGE = {"prune": "prune", "prune_at_setting": "prune", "profile": "profile", "speedup": "profile",
                 "evaluate": "evaluate", "evaluate_dense": "evaluate"}


def plan_of(out: str) -> dict[str, dict]:
    """The run's "Resources from the plan: stage/model: N MB, M min, G GPU; ..." line, by stage (model tiny)."""
    line = re.search(r"Resources from the plan: (.*)", out).group(1)
    found = {m.group(1): {"mem_mb": int(m.group(3)), "runtime": int(m.group(4))}
             for m in re.finditer(r"(\w+)/(\S+): (\d+) MB, (\d+) min, (\d+) GPU", line) if m.group(2) == "tiny"}
    assert set(found) == {"prune", "profile", "evaluate"}, line
    return found


def requested(rule: str, profile: dict, plan: dict | None = None) -> dict:
    """What a job of ``rule`` asks Slurm for under ``profile`` (and the run's ``plan``)."""
    out = {**profile["default-resources"], **profile["set-resources"].get(rule, {})}
    if plan is not None and rule in PLANNED_STAGE:
        out.update(plan[PLANNED_STAGE[rule]])
    return out


def test_the_fitted_profile_changes_only_what_the_node_cannot_give():
    fitted = fitted_profile(2, MEM_CAP_MB)
    for rule in ("profile", "calibrate", "prune", "evaluate", "evaluate_dense", "report"):
        mine, theirs = requested(rule, fitted), requested(rule, PROFILE)
        assert set(mine) == set(theirs) | {"slurm_account"}
        assert {k for k in theirs if mine[k] != theirs[k]} <= {"slurm_partition", "mem_mb", "cpus_per_task"}, rule


def setup_workdir(work: Path, model: Path) -> Path:
    make_workdir(work)
    cfg = tiny_params(model, TARGET)
    for section, value in yaml.safe_load((work / "params.yaml").read_text()).items():
        cfg.setdefault(section, value)  # sections the tiny configuration does not set (as dvc.yaml reads them)
    cfg["base"]["models"] = {"tiny": {"source": str(model), "latency_table": "tables/latency.json"}}
    (work / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (work / "tables").mkdir()
    (work / "tables/latency.json").write_text(json.dumps(TABLE))
    run(["git", "init", "-q"], work, check=True)
    run([sys.executable, "-m", "dvc", "init", "-q"], work, check=True)
    return work


def interrupt_pruning(work: Path, proc: subprocess.Popen, cpus: int, timeout: float = 1800) -> dict:
    """While the Slurm run goes on, interrupt both prune jobs once:
    - SPRINT's, once its first removal is made (its log reaches iteration 2): scancel, as a user or an admin does;
      the profile's `retries` submits it again;
    - ShortGPT's, once it runs: preempted by a job in the higher-priority partition `urgent` that needs every CPU
      of the node; Slurm requeues it (PreemptMode=REQUEUE) and starts it again.
    Returns the job ids and what the logs showed at that moment."""
    logs = {m: work / f"results/logs/prune/tiny/{m}/seed0.log" for m in ("sprint", "shortgpt")}
    done: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and len(done) < 2:
        running = dict(line.split("|", 1) for line in _sh("squeue", "-h", "-t", "RUNNING", "-o", "%k|%i").splitlines())
        for method in ("sprint", "shortgpt"):
            job = running.get(f"rule_prune_wildcards_tiny_{method}_0")
            if method in done or job is None or not logs[method].is_file():
                continue
            seen = logs[method].read_text(errors="replace")
            if method == "sprint" and "iteration 2" in seen:
                journal = work / JOURNAL
                _sh("scancel", job)
                done[method] = {"job": job, "log": seen, "how": "scancel",
                                "journal": sorted(p.name for p in journal.glob("*")) if journal.is_dir() else []}
            elif method == "shortgpt":
                urgent = _sh("sbatch", "--parsable", "-p", "urgent", "-A", ACCOUNT, "-c", str(cpus), "--mem", "100",
                             "-J", "preemptor", "-o", "/dev/null", "--wrap", "sleep 1").strip()
                done[method] = {"job": job, "log": seen, "how": f"preempted by job {urgent}"}
        time.sleep(0.1)
    assert len(done) == 2, f"the run ended before both prune jobs could be interrupted: {done}"
    return done


def sacct_jobs(run_id: str) -> list[dict]:
    fields = ["JobID", "State", "Partition", "Account", "ReqCPUS", "ReqMem", "Timelimit", "ReqTRES", "Comment",
              "Elapsed"]
    # -D: every incarnation of a requeued job, not only its last
    out = _sh("sacct", "-X", "-D", "-P", "-n", "--name", run_id, "-S", "now-1days", "-o", ",".join(fields))
    jobs = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]
    for job in jobs:
        job["rule"] = re.sub(r"_wildcards_.*$", "", job["Comment"]).removeprefix("rule_")
    return jobs


class Runs:
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    root = tmp_path_factory.mktemp("slurm")
    make_tiny_llama(root / "tiny-llama")
    r = Runs()
    r.cpus, r.mem_mb = CLUSTER
    r.fitted = fitted_profile(r.cpus, min(r.mem_mb, MEM_CAP_MB))
    (root / "fit").mkdir()
    (root / "fit/config.yaml").write_text(yaml.safe_dump(r.fitted, sort_keys=False))
    # Both copies of the workflow and the library are taken now, and each run's commands import the library from
    # its copy (PYTHONPATH; Slurm jobs inherit it): the checkout may change while the runs go on.
    r.slurm = setup_workdir(root / "slurm", root / "tiny-llama")
    r.local = setup_workdir(root / "local", root / "tiny-llama")
    env = {name: base_env(SPRINT_MLFLOW="1", MLFLOW_EXPERIMENT_NAME="slurm", HF_HUB_OFFLINE="1",
                          HF_DATASETS_OFFLINE="1", PYTHONPATH=str(work))
           for name, work in (("slurm", r.slurm), ("local", r.local))}

    # 1. through Slurm, both prune jobs interrupted mid-run
    cmd = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm", "--profile", str(root / "fit")]
    start = time.monotonic()
    with open(root / "slurm.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=r.slurm, env=env["slurm"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True)
        try:
            r.interrupted = interrupt_pruning(r.slurm, proc, r.cpus)
            proc.wait(timeout=2400)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=120)
    r.slurm_s = time.monotonic() - start
    r.slurm_out = (root / "slurm.log").read_text()
    assert proc.returncode == 0, r.slurm_out[-8000:]
    r.run_id = re.search(r"SLURM run ID: (\S+)", r.slurm_out).group(1)

    # 2. the same pipeline through the local profile
    start = time.monotonic()
    local = run([sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/default"], r.local, env["local"],
                timeout=2400)
    r.local_s = time.monotonic() - start
    assert local.returncode == 0, (local.stdout + local.stderr)[-8000:]
    r.env = env["local"]
    print(f"\nslurm run {r.slurm_s:.0f} s, local run {r.local_s:.0f} s")
    return r


# ----------------------------------------------------------------------------------------------- checks


def test_every_rule_ran_as_a_slurm_job_with_the_profiles_resources(runs):
    jobs = sacct_jobs(runs.run_id)
    done = Counter(j["rule"] for j in jobs if j["State"] == "COMPLETED")
    assert done == Counter(SLURM_RULES), jobs
    # every job of the run's plan (its "Job stats") but the localrules completed as a Slurm job
    planned = job_stats(runs.slurm_out)
    assert {rule: n for rule, n in planned.items() if rule not in LOCAL_RULES} == done, planned
    assert set(planned) >= LOCAL_RULES - {"all"} and all(f"localrule {rule}:" in runs.slurm_out
                                                         for rule in LOCAL_RULES - {"all"})
    plan = plan_of(runs.slurm_out)
    assert plan["prune"]["mem_mb"] < runs.fitted["default-resources"]["mem_mb"]  # the plan's, not the default
    for job in jobs:
        want = requested(job["rule"], runs.fitted, plan)
        assert job["Partition"] == want["slurm_partition"] and job["Account"] == want["slurm_account"], job
        assert job["ReqMem"] == f"{want['mem_mb']}M", job
        assert int(job["ReqCPUS"]) == want["cpus_per_task"], job
        assert _minutes(job["Timelimit"]) == want["runtime"], job
        assert "gres/gpu" not in job["ReqTRES"], job  # the tiny model runs on the CPU: gpus 0, no GPU asked for


def _minutes(limit: str) -> int:
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (s > 0)



def test_an_interrupted_prune_job_runs_again_and_the_run_completes(runs):
    jobs = sacct_jobs(runs.run_id)
    by = lambda method: [j for j in jobs if j["Comment"] == f"rule_prune_wildcards_tiny_{method}_0"]  # noqa: E731
    # SPRINT's: cancelled after one removal, submitted again by the profile's retries (a new Slurm job)
    sprint = by("sprint")
    assert [j["State"].split()[0] for j in sprint] == ["CANCELLED", "COMPLETED"], sprint
    assert sprint[0]["JobID"] == runs.interrupted["sprint"]["job"] != sprint[1]["JobID"]
    assert "iteration 2" in runs.interrupted["sprint"]["log"]  # one removal was made before the cancel ...
    assert "step-0000.pt" in runs.interrupted["sprint"]["journal"]  # ... and journaled
    assert re.search(r"Error in rule prune:(.|\n)*Trying to restart job", runs.slurm_out)
    # ShortGPT's: preempted, requeued by Slurm under the same job id, and run to the end
    shortgpt = by("shortgpt")
    assert [j["State"] for j in shortgpt] == ["PREEMPTED", "COMPLETED"], shortgpt
    assert {j["JobID"] for j in shortgpt} == {runs.interrupted["shortgpt"]["job"]}
    # nothing else ran twice
    others = [j for j in jobs if j["rule"] != "prune"]
    assert all(j["State"] == "COMPLETED" for j in others) and len(others) == len(SLURM_RULES) - 2, others
    # what the second attempt recomputed: Snakemake deleted the job's output folder, the journal (outside it) stayed,
    # so the rerun replays the journaled removals and makes only the rest; the journal goes with the finished run
    log = (runs.slurm / "results/logs/prune/tiny/sprint/seed0.log").read_text()
    resumed = re.search(r"resumed after (\d+) journaled steps", log)
    assert resumed and int(resumed.group(1)) >= 1, log[-3000:]
    assert "iteration 1 " not in log, log[-3000:]
    assert not (runs.slurm / JOURNAL).exists()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(path: Path) -> dict:
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k not in RUN_FIELDS}


def _table(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if not RUN_COLUMNS.search(k)} for row in csv.DictReader(path.open())]


def compared_files(work: Path) -> list[str]:
    rel = lambda p: str(p.relative_to(work))  # noqa: E731
    files = [rel(p) for p in (work / "data").rglob("*") if p.is_file() and p.name != ".snakemake_timestamp"]
    files += [rel(p) for p in (work / "results/tiny").rglob("*") if p.is_file() and p.name != ".snakemake_timestamp"]
    files += [rel(p) for p in (work / "results/report").glob("*.csv") if p.name != "benchmarks.csv"]
    return sorted(files)


def same(a: Path, b: Path) -> bool:
    if a.name == "pruning.json" or "/metrics/" in str(a):
        return _record(a) == _record(b)
    if a.suffix == ".csv":
        return _table(a) == _table(b)
    return _sha(a) == _sha(b)


def test_outputs_equal_the_local_runs(runs):
    files = compared_files(runs.slurm)
    assert files == compared_files(runs.local)
    assert {"data/calibration/tiny/seed0.pt", "results/tiny/latency.json", "results/tiny/metrics/dense.json",
            "results/tiny/pruned/sprint/seed0/x1.2/model.safetensors",
            "results/tiny/metrics/shortgpt/seed0/x1.2.json", "results/report/tiny_main.csv"} <= set(files)
    differ = [name for name in files if not same(runs.slurm / name, runs.local / name)]
    assert differ == [], differ
    for run_dir in (runs.slurm, runs.local):  # and the timing fields left out are there, measured
        metrics = json.loads((run_dir / "results/tiny/metrics/sprint/seed0/x1.2.json").read_text())
        assert metrics["measured_speedup"] > 0 and metrics["speedup"]["rounds"] >= 7
        assert (run_dir / "results/report.md").read_text().startswith("# SPRINT report")


def mlflow_record(work: Path) -> dict:
    """The MLflow store of one run: its pipeline parent, and every child by name with its status, parameters,
    metric names and tag names (values that name the invocation, such as the run group, differ by nature)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("slurm")
    every = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in every if r.data.tags.get("sprint.stage") == "pipeline"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in every if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    group = parents[0].data.tags["sprint.run_group"]
    assert all(r.data.tags["sprint.run_group"] == group for r in children)
    return {
        "parent": parents[0].info.status, "parent_params": parents[0].data.params,
        "orphans": [r.info.run_name for r in every if r is not parents[0] and r not in children],
        "finished": sorted((r.info.run_name, r.data.tags["sprint.stage"], tuple(sorted(r.data.params.items())),
                            tuple(sorted(r.data.metrics)), tuple(sorted(r.data.tags)))
                           for r in children if r.info.status == "FINISHED"),
        "unfinished": sorted((r.info.run_name, r.info.status) for r in children if r.info.status != "FINISHED"),
    }


def test_mlflow_and_dvc_record_it_as_locally(runs):
    slurm, local = mlflow_record(runs.slurm), mlflow_record(runs.local)
    assert slurm["parent"] == local["parent"] == "FINISHED"
    assert slurm["parent_params"].pop("executor") == "slurm"  # the Slurm profile's config: resources from the plan
    assert slurm["parent_params"] == local["parent_params"]
    assert slurm["orphans"] == local["orphans"] == []
    assert [f[0] for f in slurm["finished"]] == sorted(
        ["profile", "calibrate/seed0", "evaluate/dense", "prune/sprint/x1.2/seed0", "prune/shortgpt/x1.2/seed0",
         "evaluate/sprint/x1.2/seed0", "evaluate/shortgpt/x1.2/seed0", "report"])
    assert slurm["finished"] == local["finished"]  # same runs, parameters, metric and tag names
    assert local["unfinished"] == []
    # an interrupted attempt opened its run under the same parent before it was stopped: SIGTERM ends it KILLED
    assert ("prune/sprint/x1.2/seed0", "KILLED") in slurm["unfinished"], slurm["unfinished"]
    assert {name for name, _ in slurm["unfinished"]} <= {"prune/sprint/x1.2/seed0", "prune/shortgpt/x1.2/seed0"}, \
        slurm["unfinished"]
    print(f"\nMLflow runs of the interrupted attempts: {slurm['unfinished']}")

    locks = {}  # DVC: both runs recorded in dvc.lock by the onsuccess handler, `dvc status` clean
    for name, work in (("slurm", runs.slurm), ("local", runs.local)):
        status = run([str(BIN / "dvc"), "status", "--json"], work, runs.env, check=True)
        assert json.loads(status.stdout or "{}") == {}, (name, status.stdout)
        locks[name] = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    assert set(locks["slurm"]) == set(locks["local"])
    for stage in ("datasets", "model@tiny", "calibrate@tiny-0", "profile@tiny"):  # deterministic outputs
        outs = lambda s: {o["path"]: o.get("md5") for o in locks[s][stage]["outs"] if "benchmarks" not in o["path"]}  # noqa: E731
        assert outs("slurm") == outs("local"), stage
