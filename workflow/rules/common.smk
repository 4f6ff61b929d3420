# Shared by every stage: the model table, the data source and small helpers of the rules. The checks and the
# work are the library's (Snakemake puts the Snakefile's folder first on sys.path, so `sprint` is this checkout's).
# Included by the Snakefile after the configuration has passed schema validation.

import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from sprint.pipeline.codedeps import stage_files
from sprint.data.sources import check_source
from sprint.errors import SprintError
from sprint.methods import METHODS as ALL_METHODS, ONE_SHOT, REGISTRY, setting_options  # the registry of methods
from sprint.pipeline.tracking import close_pipeline_run, open_pipeline_run  # the Snakefile's onstart / onsuccess

BASEDIR = Path(workflow.basedir)
BASE, PRUNE, EVALUATE = config["base"], config["prune"], config["evaluate"]
# Where each kind of method is listed: sublayer methods at target speedups, one-shot methods at settings.
SECTIONS = {"sublayer": "prune.methods", "weights": "prune.weights", "slicing": "prune.slicing",
            "structured": "prune.structured"}
DOES = {"sublayer": "removes sublayers until a target speedup", "weights": "zeroes weights at a sparsity",
        "slicing": "slices the hidden width at a ratio", "structured": "removes heads and channels at a ratio"}


def _check_methods(kind: str, names: list) -> None:
    """Every name listed for ``kind`` is a registry method of that kind; the message says where others belong."""
    key = SECTIONS[kind] + ("" if kind == "sublayer" else ".methods")
    unknown = [m for m in names if m not in ALL_METHODS]
    if unknown:
        raise WorkflowError(f"invalid configuration at {key}: {', '.join(map(repr, unknown))} is not a method of the "
                            f"registry (sprint.methods): expected some of {', '.join(ALL_METHODS)}")
    for m in names:
        other = REGISTRY[m].kind
        if other != kind:
            where = SECTIONS[other] + ("" if other == "sublayer" else ".methods")
            raise WorkflowError(f"invalid configuration at {key}: {m} {DOES[other]}: list it under {where}")


def _one_shot(kind: str) -> tuple[list, list]:
    """(methods, settings) of a one-shot section; the settings are checked against the kind's forms."""
    section = PRUNE[SECTIONS[kind].split(".")[1]]
    _check_methods(kind, section["methods"])
    for setting in section["settings"]:
        try:
            setting_options(setting, kind)
        except ValueError as err:
            raise WorkflowError(f"invalid configuration at {SECTIONS[kind]}.settings: {err}") from None
    return list(section["methods"]), list(section["settings"]) if section["methods"] else []


_check_methods("sublayer", PRUNE["methods"])
SEEDS = [int(s) for s in BASE["seeds"]]
METHODS = list(PRUNE["methods"])
# Targets keep their spelling in params.yaml (1.2 -> x1.2, 2 -> x2): DVC's ${item} renders them the same way.
TARGET_NAMES = [str(t) for t in sorted(PRUNE["target_speedups"], key=float)]
# Every pruned model as (method, point): x{target} of the sublayer methods, each setting of the one-shot methods.
POINTS = [(m, f"x{t}") for m in METHODS for t in TARGET_NAMES]
for _kind in ("weights", "slicing", "structured"):
    _methods, _settings = _one_shot(_kind)
    POINTS += [(m, s) for m in _methods for s in _settings]


def methods_regex(*kinds: str) -> str:
    """The method wildcard of the rules that run methods of ``kinds`` (every registry method of those kinds)."""
    return "|".join(re.escape(name) for name, m in REGISTRY.items() if m.kind in kinds)


def pruned_dir(model: str, method: str, seed, point: str) -> str:
    """The checkpoint of one pruned model (sublayer methods write every target's under one job's folder)."""
    return f"results/{model}/pruned/{method}/seed{seed}/{point}"


def prune_job_output(model: str, method: str, seed, point: str) -> str:
    """What the job that writes this checkpoint declares as its output."""
    if REGISTRY[method].kind == "sublayer":
        return f"results/{model}/pruned/{method}/seed{seed}"
    return pruned_dir(model, method, seed, point)
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
            "calibration": {**config["calibration"], **entry.get("calibration", {})},
            "latency": {**config["latency"], **entry.get("latency", {})},
            "latency_table": _given_table(name, entry.get("latency_table")),
        }
    return table


def _given_table(model: str, path: str | None) -> str | None:
    """base.models.{model}.latency_table as a path relative to the Snakefile's folder (None: profile it)."""
    if path is None:
        return None
    full = Path(path).expanduser()
    if not (full if full.is_absolute() else BASEDIR / full).is_file():
        raise WorkflowError(f"invalid configuration at base.models.{model}.latency_table: {path} is not a file")
    return str(full)


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


MIRROR, MIRROR_ORIGIN = _data_mirror()
DATASETS = "data/datasets"
# Offline, every stage reads the snapshot of the mirror in data/datasets (a DVC-tracked output); online, the hub.
MIRROR_OPT = f"--mirror {DATASETS}" if MIRROR else ""


def check_data_source() -> None:
    """Fail before any job when the configured data source cannot work; the message names the configuration key."""
    hint = ("set base.data_mirror (in the configuration) or $SPRINT_DATA_MIRROR to the offline data mirror "
            "(e.g. ../shared/data), or base.data_mirror: null to use the Hugging Face hub")
    try:
        check_source(MIRROR)
    except SprintError as err:
        origin = f" (from {MIRROR_ORIGIN})" if MIRROR else ""
        raise WorkflowError(f"invalid configuration at base.data_mirror: {err}{origin}: {hint}") from None
    try:
        check_source(MIRROR, EVALUATE["tasks"])
    except SprintError as err:
        raise WorkflowError(f"invalid configuration at evaluate.tasks: {err}") from None


def calibration_inputs(wildcards) -> list:
    """A local calibration text file is an input (so a change reruns calibration); 'wikitext2' is a dataset."""
    source = config["calibration"]["source"]
    return [] if source == "wikitext2" else [source]


# ----------------------------------------------------------------------------------------------- MLflow


def model_tag(model: str) -> str:
    """Environment of one CLI call: the sprint.model tag of its MLflow run (the run's name follows its parameters)."""
    return f"SPRINT_MLFLOW_TAGS={shlex.quote('sprint.model=' + model)}"
