# Shared by every stage: the model table, the data source, the command prefix and the MLflow parent run.
# Included by the Snakefile after the configuration has passed schema validation.

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

BASEDIR = Path(workflow.basedir)

try:
    from sprint.codedeps import stage_files
except ImportError:  # the package is not installed: use the checkout beside this Snakefile
    sys.path.insert(0, str(BASEDIR))
    from sprint.codedeps import stage_files
BASE, PRUNE, EVALUATE = config["base"], config["prune"], config["evaluate"]
from sprint.methods import METHODS as ALL_METHODS  # the registry of methods
SEEDS = [int(s) for s in BASE["seeds"]]
METHODS = list(PRUNE["methods"])
# Targets keep their spelling in params.yaml (1.2 -> x1.2, 2 -> x2): DVC's ${item} renders them the same way.
TARGET_NAMES = [str(t) for t in sorted(PRUNE["target_speedups"], key=float)]
SPEEDUPS = config["latency"].get("speedups", "apart")

# `sprint` from the environment that runs Snakemake, even when that environment is not activated.
shell.prefix(f"set -euo pipefail; export PATH={shlex.quote(str(Path(sys.executable).parent))}:\"$PATH\"; ")


def _all_cores() -> int:
    """Every local core, so timing-sensitive and torch-heavy jobs run alone (cluster profiles set threads)."""
    try:
        return int(workflow.cores)
    except (WorkflowError, TypeError, ValueError):
        return 8


ALL_CORES = _all_cores()

wildcard_constraints:
    model=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    method="|".join(re.escape(m) for m in ALL_METHODS),
    seed=r"[0-9]+",
    target=r"[0-9]+(\.[0-9]+)?",


# ----------------------------------------------------------------------------------------------- models


def _resolve_local(source: str) -> Path | None:
    """A local folder for a path-like source (relative to the Snakefile's folder), else None (a hub id)."""
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = BASEDIR / path
    if path.is_dir():
        return path.resolve()
    if source.startswith(("/", "./", "../", "~")):
        raise WorkflowError(f"invalid configuration at base.models: model folder {source} does not exist")
    return None


def _model_table() -> dict:
    table = {}
    for name, entry in BASE["models"].items():
        entry = {"source": entry} if isinstance(entry, str) else dict(entry)
        source = entry["source"]
        local = None if source == "embedded" else _resolve_local(source)
        device = entry.get("device", BASE["device"])
        table[name] = {
            "source": source,
            "kind": "embedded" if source == "embedded" else ("local" if local else "hub"),
            "local": str(local) if local else None,
            "device": device,
            "dtype": entry.get("dtype", BASE["dtype"]),
            "gpus": int(entry.get("gpus", 0 if device == "cpu" else 1)),
            "tune_ratio": entry.get("tune_ratio", PRUNE["tune_ratio"]),
        }
    return table


MODELS = _model_table()


def model_dir(name: str) -> str:
    """data/models/{name}: the converted embedded model, or a reference (source.json) to a hub id / local folder."""
    return f"data/models/{name}"


def model_arg(name: str) -> str:
    """What the CLI's --model gets: the converted folder, the local folder itself, or the hub id."""
    m = MODELS[name]
    return model_dir(name) if m["kind"] == "embedded" else (m["local"] or m["source"])


def model_opts(wildcards) -> str:
    """--model/--device/--dtype for the model of a job."""
    m = MODELS[wildcards.model]
    return f"--model {shlex.quote(model_arg(wildcards.model))} --device {m['device']} --dtype {m['dtype']}"


def protocol_opts() -> str:
    """The latency protocol's flags (sprint.latency.Protocol), the same for the profile and every speedup."""
    lat = config["latency"]
    return (f"--timing {lat['timing']} --threads {lat['threads']} --warmup {lat['warmup']} --rounds {lat['rounds']} --max-rounds {lat['max_rounds']}"
            f" --max-spread {lat['max_spread']} --attempts {lat['attempts']} --estimator {lat['estimator']}")


def model_gpus(wildcards) -> int:
    return MODELS[wildcards.model]["gpus"]


def write_model_reference(name: str, out: str) -> None:
    """data/models/{name}/source.json for a model used directly (its files listed, so a change is visible)."""
    m = MODELS[name]
    record = {"name": name, "kind": m["kind"], "source": m["source"]}
    if m["local"]:
        root = Path(m["local"])
        record["path"] = m["local"]
        record["files"] = {
            str(p.relative_to(root)): {"bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
            for p in sorted(root.rglob("*")) if p.is_file()
        }
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "source.json").write_text(json.dumps(record, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------- data source


def _data_mirror() -> tuple[Path | None, str]:
    """The offline mirror and which setting named it: $SPRINT_DATA_MIRROR wins over base.data_mirror."""
    env = os.environ.get("SPRINT_DATA_MIRROR", "").strip()
    if env:
        return Path(env).expanduser().resolve(), "$SPRINT_DATA_MIRROR"
    value = BASE.get("data_mirror")
    if value:
        path = Path(value).expanduser()
        return (path if path.is_absolute() else BASEDIR / path).resolve(), "base.data_mirror"
    return None, "base.data_mirror"


def _hub_offline() -> bool:
    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(k, "").strip().lower() in truthy for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


MIRROR, MIRROR_ORIGIN = _data_mirror()
DATASETS = "data/datasets"
# Offline, every stage reads the snapshot of the mirror in data/datasets (a DVC-tracked output); online, the hub.
MIRROR_OPT = f"--mirror {DATASETS}" if MIRROR else ""


def check_data_source() -> None:
    """Fail before any job when the configured data source cannot work; the message names base.data_mirror."""
    hint = ("set base.data_mirror (in the configuration) or $SPRINT_DATA_MIRROR to the offline data mirror "
            "(e.g. ../shared/data), or base.data_mirror: null to use the Hugging Face hub")
    if MIRROR is None:
        if _hub_offline():
            raise WorkflowError(
                "invalid configuration at base.data_mirror: no data mirror is set and the Hugging Face hub is "
                f"offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE): {hint}")
        return
    if not MIRROR.is_dir():
        raise WorkflowError(
            f"invalid configuration at base.data_mirror: the data mirror {MIRROR} (from {MIRROR_ORIGIN}) does not "
            f"exist or is not a folder: {hint}")
    if not (MIRROR / "wikitext2").is_dir():
        raise WorkflowError(
            f"invalid configuration at base.data_mirror: {MIRROR} (from {MIRROR_ORIGIN}) has no wikitext2/ folder, "
            f"so it is not a data mirror: {hint}")
    missing = [t for t in EVALUATE["tasks"] if not (MIRROR / "benchmarks" / f"{t}.jsonl").is_file()]
    if missing:
        raise WorkflowError(
            f"invalid configuration at evaluate.tasks: the data mirror {MIRROR} has no benchmarks/<task>.jsonl for "
            f"{', '.join(missing)}")


def snapshot_datasets(out: str) -> None:
    """Copy the mirror's WikiText-2 and benchmark files into ``out`` (or note that the hub is used)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"source": "hub"}
    if MIRROR is not None:
        files = sorted([*MIRROR.glob("wikitext2/*.tokens"), *MIRROR.glob("benchmarks/*.jsonl"), *MIRROR.glob("*.md")])
        for src in files:
            dst = out / src.relative_to(MIRROR)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)  # contents only: the mirror's read-only modes would block later deletion
        record = {"source": "mirror", "mirror": str(MIRROR), "files": [str(f.relative_to(MIRROR)) for f in files]}
    (out / "SOURCE.json").write_text(json.dumps(record, indent=2) + "\n")


def calibration_inputs(wildcards) -> list:
    """A local calibration text file is an input (so a change reruns calibration); 'wikitext2' is a dataset."""
    source = config["calibration"]["source"]
    return [] if source == "wikitext2" else [source]


# ----------------------------------------------------------------------------------------------- MLflow


def mlflow_env(name: str, model: str = "") -> str:
    """Environment for one CLI call: its MLflow run name and the sprint.model tag (shell-quoted)."""
    env = f"SPRINT_MLFLOW_RUN_NAME={shlex.quote(name)}"
    return env + (f" SPRINT_MLFLOW_TAGS={shlex.quote('sprint.model=' + model)}" if model else "")


_PIPELINE_RUN = {}


def start_tracking() -> None:
    """onstart (main process, real runs only): open the parent MLflow run and export its id and the run group,
    so every job's `sprint` command nests its run under it. A parent id already in the environment is kept."""
    if os.environ.get("SPRINT_MLFLOW", "1").strip().lower() in {"0", "false", "no", "off"}:
        return
    if os.environ.get("SPRINT_MLFLOW_PARENT_RUN_ID"):  # an outer orchestrator owns the parent run
        os.environ.setdefault("SPRINT_RUN_GROUP", os.environ["SPRINT_MLFLOW_PARENT_RUN_ID"])
        return
    try:
        from sprint.tracking import start_pipeline_run

        run_id, group = start_pipeline_run(config, os.environ.get("SPRINT_RUN_GROUP") or None)
    except Exception as err:  # tracking must never stop the pipeline
        logger.warning(f"MLflow tracking disabled for this run: {type(err).__name__}: {err}")
        return
    os.environ["SPRINT_RUN_GROUP"] = group
    if run_id:
        os.environ["SPRINT_MLFLOW_PARENT_RUN_ID"] = run_id
        _PIPELINE_RUN["id"] = run_id


def stop_tracking(status: str) -> None:
    if _PIPELINE_RUN.get("id"):
        from sprint.tracking import end_pipeline_run

        end_pipeline_run(_PIPELINE_RUN["id"], status)


# ----------------------------------------------------------------------------------------------- DVC


DVC_STAGE_ENV = "SPRINT_DVC_STAGE"  # set by dvc.yaml's commands: Snakemake runs inside `dvc repro`


def _pending_outputs() -> set[str] | None:
    """Outputs Snakemake would still (re)make for the default target, from a nested `snakemake --summary`
    (None if it cannot tell)."""
    env = {**os.environ, DVC_STAGE_ENV: "1", "SPRINT_MLFLOW": "0"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--summary", "--nolock", "--cores", "1"], cwd=BASEDIR,
                          env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return None
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    header = next((r for r in rows if r and r[0] == "output_file"), None)
    if header is None or "plan" not in header:
        return None
    plan = header.index("plan")
    return {r[0] for r in rows if r is not header and len(r) > plan and r[plan] != "no update"}


def record_in_dvc() -> None:
    """onsuccess: record in dvc.lock every DVC stage whose outputs Snakemake now holds up to date, so that
    `dvc status` agrees with Snakemake after a run (one pipeline state; see workflow/README.md).

    A stage is recorded when all its outputs exist and none is one Snakemake would still remake (a nested
    `snakemake --summary`): after a partial run (a single target) the stages left to do stay to do for DVC too.
    Skipped inside `dvc repro` (DVC records its own stages), without a DVC repository, and with --configfile (the
    stages of dvc.yaml are generated from params.yaml, not from the run's configuration).  Never fails the pipeline.
    """
    if os.environ.get(DVC_STAGE_ENV) or not (BASEDIR / ".dvc").is_dir() or not (BASEDIR / "dvc.yaml").is_file():
        return
    if workflow.overwrite_configfiles:
        logger.info("dvc.lock not updated: this run's --configfile is not params.yaml, which dvc.yaml reads")
        return
    try:
        pending = _pending_outputs()
        if pending is None:
            raise RuntimeError("`snakemake --summary` failed, so the jobs left to do are unknown")
        from dvc.repo import Repo

        def done(path: str) -> bool:
            return Path(path).exists() and not any(p == path or p.startswith(path.rstrip("/") + "/")
                                                   for p in pending)

        with Repo(str(BASEDIR)) as repo:
            complete = [st for st in repo.index.stages
                        if st.cmd and all(done(os.path.relpath(out.fs_path, BASEDIR)) for out in st.outs)]
            for st in complete:
                repo.commit(st.addressing, force=True)
        logger.info(f"dvc.lock: recorded {len(complete)} DVC stage(s) whose outputs Snakemake holds up to date")
    except Exception as err:  # the pipeline's results stand; only DVC's record of them is missing
        logger.warning(f"dvc.lock not updated ({type(err).__name__}: {err}); `dvc commit -f` records it")
