# Shared by every stage: the checked configuration, the model table, the data source, the results layout and small
# helpers of the rules. The checks and the work are the library's (Snakemake puts the Snakefile's folder first on
# sys.path, so `sprint` is this checkout's). Included by the Snakefile after the configuration has passed schema
# validation.

import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from sprint.errors import SprintError
from sprint.layout import ResultsTree, report_folder  # the results tree: every rule's outputs, logs and benchmarks
from sprint.methods import METHODS as ALL_METHODS, ONE_SHOT, REGISTRY, setting_options  # the registry of methods
from sprint.pipeline.codedeps import stage_files
from sprint.pipeline.config import check_data_source, check_methods, data_mirror, model_table, one_shot_points
from sprint.pipeline.resources import cluster_check, describe
from sprint.pipeline.tracking import close_pipeline_run, open_pipeline_run  # the Snakefile's onstart / onsuccess

BASEDIR = Path(workflow.basedir)
BASE, PRUNE, EVALUATE = config["base"], config["prune"], config["evaluate"]
RESULTS = ResultsTree()

try:  # every check before any job; the message names the configuration key
    METHODS = check_methods(config, "sublayer")
    ONE_SHOT_POINTS = [point for kind in ONE_SHOT for point in one_shot_points(config, kind)]
    MODELS = model_table(config, BASEDIR)
    MIRROR, _ = data_mirror(config, BASEDIR)
    check_data_source(config, BASEDIR)
except SprintError as err:
    raise WorkflowError(str(err)) from None

# The Slurm profile (executor=slurm): the prune / profile / evaluate jobs' memory, GPUs and run time per model from the
# plan, checked against the cluster's partitions before any job is submitted (sprint.pipeline.resources).  A job
# running on its node parses this file again and does not plan again.
PLANNED = {}
if config.get("executor") == "slurm" and not workflow.remote_exec:
    try:
        PLANNED = cluster_check(MODELS, config, ("prune", "profile", "evaluate"))
    except SprintError as err:
        raise WorkflowError(str(err)) from None
    if PLANNED:
        print(f"Resources from the plan: {describe(PLANNED)}", file=sys.stderr)


def _profile_default(key: str):
    """The profile's default-resources value of ``key`` (for a model whose config could not be read)."""
    for arg in workflow.resource_settings.default_resources.args or []:
        name, _, value = arg.partition("=")
        if name == key:
            return int(value) if value.isdigit() else value
    raise WorkflowError(f"resources: no plan for some model (its config.json could not be read) and the profile "
                        f"has no default-resources {key}")


def planned_resources(stage: str) -> dict:
    """mem_mb and runtime of a stage's jobs from the plan (the Slurm profile), else none: the profile's."""
    if config.get("executor") != "slurm" or workflow.remote_exec:
        return {}
    return {key: (lambda wc, key=key: PLANNED[stage, wc.model][key] if (stage, wc.model) in PLANNED
                  else _profile_default(key)) for key in ("mem_mb", "runtime")}


SEEDS = [int(s) for s in BASE["seeds"]]
# Targets keep their spelling in params.yaml (1.2 -> x1.2, 2 -> x2): DVC's ${item} renders them the same way.
TARGET_NAMES = [str(t) for t in sorted(PRUNE["target_speedups"], key=float)]
# Every pruned model as (method, point): x{target} of the sublayer methods, each setting of the one-shot methods.
POINTS = [(m, f"x{t}") for m in METHODS for t in TARGET_NAMES] + ONE_SHOT_POINTS


def methods_regex(*kinds: str) -> str:
    """The method wildcard of the rules that run methods of ``kinds`` (every registry method of those kinds)."""
    return "|".join(re.escape(name) for name, m in REGISTRY.items() if m.kind in kinds)


def prune_job_output(model: str, method: str, seed, point: str) -> str:
    """What the job that writes this pruned model's checkpoint declares as its output (a sublayer method's job
    writes every target's checkpoint under one folder)."""
    sublayer = REGISTRY[method].kind == "sublayer"
    return RESULTS.pruned(model, method, seed, None if sublayer else point)


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
    point=r"x[0-9]+(\.[0-9]+)?|[1-9][0-9]*of[1-9][0-9]*|[usc][1-9][0-9]?",
    setting=r"[1-9][0-9]*of[1-9][0-9]*|[usc][1-9][0-9]?",


# ----------------------------------------------------------------------------------------------- models


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
    """The latency protocol's flags (sprint.measure.protocol.Protocol), the same for the profile and every speedup."""
    lat = config["latency"]
    return (f"--timing {lat['timing']} --threads {lat['threads']} --warmup {lat['warmup']} --rounds {lat['rounds']} --max-rounds {lat['max_rounds']}"
            f" --max-spread {lat['max_spread']} --attempts {lat['attempts']} --estimator {lat['estimator']}"
            f" --sparse-kernels {lat['sparse_kernels']}")


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


DATASETS = "data/datasets"
# Offline, every stage reads the snapshot of the mirror in data/datasets (a DVC-tracked output); online, the hub.
MIRROR_OPT = f"--mirror {DATASETS}" if MIRROR else ""


def calibration_inputs(wildcards) -> list:
    """A local calibration text file is an input (so a change reruns calibration); 'wikitext2' is a dataset."""
    source = config["calibration"]["source"]
    return [] if source == "wikitext2" else [source]


# ----------------------------------------------------------------------------------------------- MLflow


def model_tag(model: str) -> str:
    """Environment of one CLI call: the sprint.model tag of its MLflow run (the run's name follows its parameters)."""
    return f"SPRINT_MLFLOW_TAGS={shlex.quote('sprint.model=' + model)}"
