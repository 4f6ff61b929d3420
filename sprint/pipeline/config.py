"""The pipeline configuration's checks beyond its schema (workflow/schemas/params.schema.yaml): the methods and
settings of each prune section against the registry, the model table, the data source.  Each function takes the
configuration (and the folder its relative paths start from: the Snakefile's) and raises SprintError naming the
configuration key, "invalid configuration at prune.weights.settings: ..."; workflow/rules/common.smk calls them and
reports the error as Snakemake's WorkflowError."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sprint.data.sources import MIRROR_ENV, check_source
from sprint.errors import SprintError
from sprint.methods import METHODS, REGISTRY, setting_options

# Where each kind of method is listed: sublayer methods at target speedups, one-shot methods at settings.
SECTIONS = {"sublayer": "prune.methods", "weights": "prune.weights.methods", "slicing": "prune.slicing.methods",
            "structured": "prune.structured.methods"}
DOES = {"sublayer": "removes sublayers until a target speedup", "weights": "zeroes weights at a sparsity",
        "slicing": "slices the hidden width at a ratio", "structured": "removes heads and channels at a ratio"}

# SPRINT's settings that a model entry (base.models.<name>) may change against the prune section: a controlled change
PER_MODEL_PRUNE = ("tune_ratio", "reference", "distance", "tie_break")
PRUNE_DEFAULTS = {"tie_break": "none"}  # for configurations written before the key existed


def invalid(key: str, message: str) -> SprintError:
    return SprintError(f"invalid configuration at {key}: {message}")


def check_methods(config: dict[str, Any], kind: str) -> list[str]:
    """The methods listed for ``kind``, each a registry method of that kind; the error says where others belong."""
    prune, key = config["prune"], SECTIONS[kind]
    names = list(prune["methods"] if kind == "sublayer" else prune[kind]["methods"])
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise invalid(key, f"{', '.join(map(repr, unknown))} is not a method of the registry (sprint.methods): "
                           f"expected some of {', '.join(METHODS)}")
    for m in names:
        other = REGISTRY[m].kind
        if other != kind:
            raise invalid(key, f"{m} {DOES[other]}: list it under {SECTIONS[other]}")
    return names


def one_shot_points(config: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    """(method, setting) of every model of a one-shot section; its settings checked against the kind's forms."""
    methods, settings = check_methods(config, kind), list(config["prune"][kind]["settings"])
    for setting in settings:
        try:
            setting_options(setting, kind)
        except ValueError as err:
            raise invalid(f"prune.{kind}.settings", str(err)) from None
    return [(m, s) for m in methods for s in settings]


def _local_folder(source: str, basedir: Path) -> Path | None:
    """A local folder for a path-like source (relative to ``basedir``), else None (a hub id)."""
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = basedir / path
    if path.is_dir():
        return path.resolve()
    if source.startswith(("/", "./", "../", "~")):
        raise invalid("base.models", f"model folder {source} does not exist")
    return None


def _given_table(model: str, path: str | None, basedir: Path) -> str | None:
    """base.models.{model}.latency_table as a path relative to ``basedir`` (None: profile it)."""
    if path is None:
        return None
    full = Path(path).expanduser()
    if not (full if full.is_absolute() else basedir / full).is_file():
        raise invalid(f"base.models.{model}.latency_table", f"{path} is not a file")
    return str(full)


def model_table(config: dict[str, Any], basedir: Path) -> dict[str, dict[str, Any]]:
    """base.models, each entry complete: its source and kind (embedded, local folder or hub id), device, dtype, GPUs,
    tune ratio, SPRINT's reference, distance and tie break, calibration and latency settings (the model's own over the
    configuration's) and latency table."""
    base, table = config["base"], {}
    for name, entry in base["models"].items():
        entry = {"source": entry} if isinstance(entry, str) else dict(entry)
        source = entry["source"]
        local = None if source == "embedded" else _local_folder(source, basedir)
        device = entry.get("device", base["device"])
        table[name] = {
            "source": source,
            "kind": "embedded" if source == "embedded" else ("local" if local else "hub"),
            "local": str(local) if local else None,
            "device": device,
            "dtype": entry.get("dtype", base["dtype"]),
            "gpus": int(entry.get("gpus", 0 if device == "cpu" else 1)),
            **{key: entry.get(key, config["prune"].get(key, PRUNE_DEFAULTS.get(key))) for key in PER_MODEL_PRUNE},
            "calibration": {**config["calibration"], **entry.get("calibration", {})},
            "latency": {**config["latency"], **entry.get("latency", {})},
            "latency_table": _given_table(name, entry.get("latency_table"), basedir),
        }
    return table


def data_mirror(config: dict[str, Any], basedir: Path) -> tuple[Path | None, str]:
    """The offline data mirror and which setting named it: $SPRINT_DATA_MIRROR wins over base.data_mirror."""
    env = os.environ.get(MIRROR_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve(), f"${MIRROR_ENV}"
    value = config["base"].get("data_mirror")
    if value:
        path = Path(value).expanduser()
        return (path if path.is_absolute() else basedir / path).resolve(), "base.data_mirror"
    return None, "base.data_mirror"


def check_data_source(config: dict[str, Any], basedir: Path) -> None:
    """The configured data source can work: the mirror (or the hub) holds WikiText-2 and every evaluation task."""
    mirror, origin = data_mirror(config, basedir)
    hint = ("set base.data_mirror (in the configuration) or $SPRINT_DATA_MIRROR to the offline data mirror "
            "(e.g. ../shared/data), or base.data_mirror: null to use the Hugging Face hub")
    try:
        check_source(mirror)
    except SprintError as err:
        raise invalid("base.data_mirror", f"{err}{f' (from {origin})' if mirror else ''}: {hint}") from None
    try:
        check_source(mirror, config["evaluate"]["tasks"])
    except SprintError as err:
        raise invalid("evaluate.tasks", str(err)) from None
