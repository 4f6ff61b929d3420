"""MLflow tracking: one run per CLI stage, nested under the run of the pipeline invocation that started it.

Used by ``sprint.commands``::

    with stage_run("prune", {"method": "sprint", ...}) as run:
        run.log_metrics({...}); run.log_params({...}); run.log_artifact(path)

and by the Snakefile (``start_pipeline_run`` in ``onstart``, ``end_pipeline_run`` in ``onsuccess`` / ``onerror``).

Environment:

- ``SPRINT_MLFLOW=0``: tracking off; ``stage_run`` yields a run object that accepts every call and does nothing.
- ``MLFLOW_TRACKING_URI``: where runs go (default ``sqlite:///mlflow.db`` in the current folder).
- ``SPRINT_MLFLOW_EXPERIMENT``: experiment name (default ``sprint``).
- ``SPRINT_MLFLOW_PARENT_RUN_ID``: the pipeline run that stage runs nest under (exported by the Snakefile).
- ``SPRINT_RUN_GROUP``: id of one pipeline invocation, tag ``sprint.run_group`` on the parent and every stage run.
- ``SPRINT_MLFLOW_RUN_NAME``: the stage run's name (the Snakefile sets it per job, e.g. ``prune/sprint/x1.4/seed0``);
  without it the name is derived from the stage and its parameters.
- ``SPRINT_MLFLOW_TAGS``: extra tags ``key=value;key=value`` (the Snakefile adds ``sprint.model``).

Tracking never breaks a stage: a tracking backend that stays unavailable after retries (SQLite's "database is
locked" under parallel jobs is retried with backoff) costs a warning, not the pruned model.  An exception raised
inside the ``with`` block marks the run FAILED (KILLED for Ctrl-C) and propagates unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import numbers
import os
import random
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

from sprint import provenance

log = logging.getLogger("sprint")

ENABLE_ENV = "SPRINT_MLFLOW"
EXPERIMENT_ENV = "SPRINT_MLFLOW_EXPERIMENT"
PARENT_ENV = "SPRINT_MLFLOW_PARENT_RUN_ID"
GROUP_ENV = "SPRINT_RUN_GROUP"
RUN_NAME_ENV = "SPRINT_MLFLOW_RUN_NAME"
TAGS_ENV = "SPRINT_MLFLOW_TAGS"
DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "sprint"
MAX_PARAM_CHARS = 500
RETRIES = 12

_T = TypeVar("_T")
_TRANSIENT = ("database is locked", "database table is locked", "database schema has changed", "busy")
_BAD_KEY_CHARS = re.compile(r"[^\w\-. /]")


# ------------------------------------------------------------------------------------------------ settings


def enabled() -> bool:
    """False when ``SPRINT_MLFLOW`` is 0 / false / no / off."""
    return os.environ.get(ENABLE_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def experiment_name() -> str:
    return os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT


def new_group_id() -> str:
    """A sortable, unique id for one pipeline invocation: ``20250101-120000-1a2b3c``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


# ------------------------------------------------------------------------------------------------ plumbing


def _transient(err: BaseException) -> bool:
    text = str(err).lower()
    return any(t in text for t in _TRANSIENT)


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other backends and in-memory databases)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).resolve()


@contextlib.contextmanager
def _db_lock(uri: str) -> Iterator[None]:
    """Serialise writers of one local SQLite file across processes (an flock in the temp folder).

    Parallel Snakemake jobs otherwise race on the first schema migration and on "database is locked".
    Where flock is unavailable the retries in ``_call`` are the only guard.
    """
    db = _sqlite_file(uri)
    if db is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    key = hashlib.sha1(str(db).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"sprint-mlflow-{key}.lock"
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _call(uri: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)`` under the SQLite lock, retried with jittered backoff on transient lock errors."""
    delay = 0.2
    for attempt in range(RETRIES):
        try:
            with _db_lock(uri):
                return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - MLflow wraps SQLAlchemy errors in its own types
            if attempt == RETRIES - 1 or not _transient(err):
                raise
            log.debug("mlflow: %s; retrying in %.1fs", err, delay)
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def _client(uri: str):
    """An MlflowClient whose store is built now, under the lock (a new SQLite file is migrated on first use)."""
    from mlflow import MlflowClient

    return _call(uri, MlflowClient, tracking_uri=uri)  # the constructor builds the store


def _experiment_id(client, uri: str, name: str) -> str:
    exp = _call(uri, client.get_experiment_by_name, name)
    if exp is not None:
        return exp.experiment_id
    try:
        return _call(uri, client.create_experiment, name)
    except Exception:  # created meanwhile by a parallel job
        exp = _call(uri, client.get_experiment_by_name, name)
        if exp is None:
            raise
        return exp.experiment_id


def _clean_key(key: Any) -> str:
    """MLflow keys allow word characters, - . space and /; anything else becomes _."""
    return _BAD_KEY_CHARS.sub("_", str(key))[:250] or "_"


def _param_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


def _metric_value(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item):
        with contextlib.suppress(Exception):
            v = item()
            if isinstance(v, numbers.Real):
                return float(v)
    return None


def _env_tags() -> dict[str, str]:
    tags = {}
    for part in os.environ.get(TAGS_ENV, "").split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            tags[_clean_key(key.strip())] = _param_value(value.strip())
    return tags


def model_name(path: str) -> str:
    """The model's name for comparing runs: the pipeline's name from params.yaml (its ``sprint.model`` tag), else the
    model folder's or hub id's last part."""
    return _env_tags().get("sprint.model") or Path(str(path).rstrip("/")).name


def run_name(stage: str, params: Mapping[str, Any]) -> str:
    """``SPRINT_MLFLOW_RUN_NAME``, else ``stage[/method][/xTARGET][/seedN]`` or ``stage/<model>``."""
    explicit = os.environ.get(RUN_NAME_ENV)
    if explicit:
        return explicit
    parts = [stage]
    if params.get("method"):
        parts.append(str(params["method"]))
    target = params.get("target_speedup")
    if target not in (None, ""):
        values = target if isinstance(target, (list, tuple)) else str(target).split(",")
        with contextlib.suppress(ValueError):
            parts.append(f"x{max(float(v) for v in values):g}")
    if len(parts) == 1 and params.get("model"):
        model = Path(str(params["model"]))
        parts.append("/".join(model.parts[-3:]) if "pruned" in model.parts else model.name)
    if params.get("seed") is not None and stage != "evaluate":
        parts.append(f"seed{params['seed']}")
    return "/".join(parts)


# ------------------------------------------------------------------------------------------------ run objects


class NullRun:
    """The run when tracking is off (or unavailable): accepts every call, records nothing."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        pass

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass


class StageRun(NullRun):
    """An open MLflow run; every method logs a warning instead of raising when the backend fails."""

    def __init__(self, client, uri: str, run_id: str):
        self._client, self._uri, self.run_id = client, uri, run_id
        self._params: dict[str, str] = {}

    def _safely(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            _call(self._uri, fn, *args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking must not break a stage
            log.warning("mlflow: could not %s for run %s: %s", what, self.run_id, err)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        new, clashes = [], {}
        for key, value in params.items():
            key, value = _clean_key(key), _param_value(value)
            if key in self._params:
                if self._params[key] != value:  # MLflow params are immutable: keep the new value as a tag
                    clashes[f"param.{key}"] = value
                continue
            self._params[key] = value
            new.append(Param(key, value))
        for i in range(0, len(new), 100):
            self._safely("log params", self._client.log_batch, self.run_id, params=new[i : i + 100])
        if clashes:
            self.set_tags(clashes)

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = []
        for key, value in metrics.items():
            v = _metric_value(value)
            if v is None:
                log.debug("mlflow: metric %s=%r is not a number, not logged", key, value)
                continue
            batch.append(Metric(_clean_key(key), v if not math.isinf(v) else math.copysign(1e308, v), now, step))
        for i in range(0, len(batch), 500):
            self._safely("log metrics", self._client.log_batch, self.run_id, metrics=batch[i : i + 500])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        p = Path(path)
        if p.is_dir():
            self._safely(f"log artifacts {p}", self._client.log_artifacts, self.run_id, str(p), artifact_path or p.name)
        elif p.is_file():
            self._safely(f"log artifact {p}", self._client.log_artifact, self.run_id, str(p), artifact_path)
        else:
            log.warning("mlflow: artifact %s does not exist, not logged", p)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(_clean_key(k), _param_value(v)) for k, v in tags.items()]
        if batch:
            self._safely("set tags", self._client.log_batch, self.run_id, tags=batch)


# ------------------------------------------------------------------------------------------------ public API


def _open_run(stage: str, params: Mapping[str, Any], name: str, parent: str | None, group: str,
              extra_tags: Mapping[str, str]) -> StageRun | None:
    uri = tracking_uri()
    try:
        client = _client(uri)
        exp_id = _experiment_id(client, uri, experiment_name())
        tags = {"sprint.stage": stage, "sprint.run_group": group, **extra_tags}
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = _call(uri, client.create_run, exp_id, tags=tags, run_name=name)
    except Exception as err:  # noqa: BLE001
        log.warning("mlflow: tracking unavailable at %s (%s: %s); continuing without it", uri, type(err).__name__, err)
        return None
    handle = StageRun(client, uri, run.info.run_id)
    handle.log_params(params)
    return handle


def _close_run(handle: StageRun, status: str) -> None:
    handle._safely(f"mark run {status}", handle._client.set_terminated, handle.run_id, status)


@contextlib.contextmanager
def stage_run(stage: str, params: Mapping[str, Any]) -> Iterator[NullRun]:
    """Open an MLflow run for one CLI stage (a child of ``$SPRINT_MLFLOW_PARENT_RUN_ID`` when set).

    Params are logged at once (values stringified, at most 500 characters), the code's provenance (git commit,
    dirty tree, package versions: :mod:`sprint.provenance`) as tags; the run is FINISHED when the block ends, FAILED (KILLED on KeyboardInterrupt) when it raises, and the exception propagates.
    """
    if not enabled():
        yield NullRun()
        return
    extra = {k: _param_value(params[k]) for k in ("method", "seed", "target_speedup") if params.get(k) is not None}
    extra = {f"sprint.{k}": v for k, v in extra.items()}
    extra.update({f"sprint.{k}": v for k, v in provenance.flat().items()})
    if provenance.provenance()["git_commit"]:
        extra["mlflow.source.git.commit"] = provenance.provenance()["git_commit"]  # MLflow's own column
    extra.update(_env_tags())
    handle = _open_run(stage, params, run_name(stage, params), os.environ.get(PARENT_ENV) or None,
                       os.environ.get(GROUP_ENV) or "standalone", extra)
    if handle is None:
        yield NullRun()
        return
    try:
        yield handle
    except BaseException as err:
        handle.set_tags({"sprint.error": f"{type(err).__name__}: {err}"})
        _close_run(handle, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    _close_run(handle, "FINISHED")


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def start_pipeline_run(config: Mapping[str, Any] | None = None, group: str | None = None) -> tuple[str | None, str]:
    """Open (or resume) the parent run of one pipeline invocation; return ``(run_id or None, group)``.

    A parent run already tagged with this ``group`` is resumed, so several invocations (e.g. the Snakemake calls
    of one ``SPRINT_RUN_GROUP=... dvc repro``) share one parent. ``config`` is logged flattened as params.
    """
    group = group or new_group_id()
    if not enabled():
        return None, group
    uri = tracking_uri()
    try:
        client = _client(uri)
        exp_id = _experiment_id(client, uri, experiment_name())
        found = _call(uri, client.search_runs, [exp_id],
                      filter_string=f"tags.`sprint.run_group` = '{group}' and tags.`sprint.stage` = 'pipeline'",
                      max_results=1)
        if found:
            run_id = found[0].info.run_id
            _call(uri, client.update_run, run_id, status="RUNNING")
            return run_id, group
        run = _call(uri, client.create_run, exp_id, run_name=f"pipeline/{group}",
                    tags={"sprint.stage": "pipeline", "sprint.run_group": group})
    except Exception as err:  # noqa: BLE001
        log.warning("mlflow: tracking unavailable at %s (%s: %s); continuing without it", uri, type(err).__name__, err)
        return None, group
    handle = StageRun(client, uri, run.info.run_id)
    if config:
        handle.log_params(_flatten(config))
    return run.info.run_id, group


def end_pipeline_run(run_id: str | None, status: str = "FINISHED") -> None:
    """Mark the parent run FINISHED / FAILED (no-op for None or when tracking is off)."""
    if not run_id or not enabled():
        return
    uri = tracking_uri()
    try:
        _call(uri, _client(uri).set_terminated, run_id, status)
    except Exception as err:  # noqa: BLE001
        log.warning("mlflow: could not mark pipeline run %s %s: %s", run_id, status, err)
