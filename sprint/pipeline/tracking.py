"""MLflow tracking: one run per CLI stage, nested under the run of the pipeline invocation that started it.

Used by ``sprint.pipeline.commands``::

    with stage_run("prune", {"method": "sprint", ...}) as run:
        run.log_metrics({...}); run.log_params({...}); run.log_artifact(path)

and by the Snakefile (``open_pipeline_run`` in ``onstart``, ``close_pipeline_run`` in ``onsuccess`` / ``onerror``).
Runs go through MLflow's fluent API: ``mlflow.start_run(parent_run_id=...)`` as a context manager, which marks a
run FAILED when its block raises (the error is also tagged ``sprint.error``) and FINISHED otherwise.

Environment (MLflow's own variables where it has them):

- ``MLFLOW_TRACKING_URI``: where runs go (default ``sqlite:///mlflow.db`` in the current folder);
- ``MLFLOW_EXPERIMENT_NAME``: the experiment (default ``sprint``);
- ``SPRINT_MLFLOW=0``: tracking off; ``stage_run`` yields a run object that accepts every call and does nothing;
- ``SPRINT_MLFLOW_PARENT_RUN_ID``: the pipeline run that stage runs nest under (exported by the Snakefile);
- ``SPRINT_RUN_GROUP``: id of one pipeline invocation, tag ``sprint.run_group`` on the parent and every stage run;
- ``SPRINT_MLFLOW_TAGS``: extra tags ``key=value;key=value`` (the Snakefile adds ``sprint.model``).

Runs are named by one scheme, :func:`run_name` (``prune/sprint/x1.2/seed0``, ``evaluate/dense``, ...).

Tracking never breaks a stage: a store that cannot be reached costs a warning, not the pruned model.  Parallel
Snakemake jobs share one SQLite file: every call into MLflow holds a file lock (``filelock``) beside the database,
so a new store's schema migration never races, and ``tenacity`` retries "database is locked" from other readers
(``mlflow ui``) with backoff.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

from sprint import provenance

log = logging.getLogger("sprint")

ENABLE_ENV = "SPRINT_MLFLOW"
PARENT_ENV = "SPRINT_MLFLOW_PARENT_RUN_ID"
GROUP_ENV = "SPRINT_RUN_GROUP"
TAGS_ENV = "SPRINT_MLFLOW_TAGS"
DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "sprint"

_T = TypeVar("_T")


def enabled() -> bool:
    """False when ``SPRINT_MLFLOW`` is 0 / false / no / off."""
    return os.environ.get(ENABLE_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def new_group_id() -> str:
    """A sortable, unique id for one pipeline invocation: ``20250101-120000-1a2b3c``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _locked(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)`` holding the store's file lock (local SQLite only), retried on transient lock errors."""
    import tenacity
    from filelock import FileLock

    uri = tracking_uri()
    path = uri[len("sqlite:///"):].split("?", 1)[0] if uri.startswith("sqlite:///") else ""
    lock = FileLock(f"{Path(path).resolve()}.lock") if path not in ("", ":memory:") else contextlib.nullcontext()

    def call() -> _T:
        with lock:
            return fn(*args, **kwargs)

    transient = tenacity.retry_if_exception(lambda err: "database is locked" in str(err).lower())
    retrying = tenacity.Retrying(retry=transient, stop=tenacity.stop_after_attempt(8), reraise=True,
                                 wait=tenacity.wait_random_exponential(multiplier=0.2, max=5))
    return retrying(call)


# MLflow 3's UI opens an experiment without this tag on its GenAI overview (traces, prompts); the kind of a
# training / evaluation project opens it on its runs.  The tag is MLflow's own (mlflow.experimentKind, the values
# of the UI's ExperimentKind: genai_development, custom_model_development, ...); one set by hand is kept.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def _use_store() -> None:
    """Point MLflow's fluent API at the configured store and experiment (creating them on first use), the
    experiment tagged to open on its runs (:data:`EXPERIMENT_KIND_TAG`) unless it already has a kind."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)
    if EXPERIMENT_KIND_TAG not in (experiment.tags or {}):
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


def _env_tags() -> dict[str, str]:
    tags = {}
    for part in os.environ.get(TAGS_ENV, "").split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            tags[key.strip()] = value.strip()
    return tags


def model_name(path: str) -> str:
    """The model's name for comparing runs: the pipeline's name from params.yaml (its ``sprint.model`` tag), else the
    model folder's or hub id's last part."""
    return _env_tags().get("sprint.model") or Path(str(path).rstrip("/")).name


def run_name(stage: str, params: Mapping[str, Any]) -> str:
    """``stage[/method[/POINT]][/seedN]``: prune/sprint/x1.4/seed0 (the largest target of the run),
    evaluate/sprint/x1.2/seed0 (the pruning seed), prune/wanda/2of4/seed0 (a weight setting), evaluate/dense,
    calibrate/seed0, profile, report."""
    parts = [stage]
    method = params.get("method") or ("dense" if stage == "evaluate" else None)
    if method:
        parts.append(str(method))
    target = params.get("target_speedup")
    if method and method != "dense" and params.get("point"):
        parts.append(str(params["point"]))
    elif method and method != "dense" and target not in (None, ""):
        values = target if isinstance(target, (list, tuple)) else str(target).split(",")
        with contextlib.suppress(ValueError):
            parts.append(f"x{max(float(v) for v in values):g}")
    if params.get("seed") is not None and (stage == "calibrate" or method not in (None, "dense")):
        parts.append(f"seed{params['seed']}")
    return "/".join(parts)


def _text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


class StageRun:
    """The active MLflow run of a stage (``run_id`` None: tracking off or unavailable, and every call does nothing).
    A call the store refuses costs a warning, never the stage."""

    def __init__(self, run_id: str | None = None):
        self.run_id = run_id

    def _safely(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self.run_id is None:
            return
        try:
            _locked(fn, *args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking must not break a stage
            log.warning("mlflow: could not %s for run %s: %s", what, self.run_id, err)

    def log_params(self, params: Mapping[str, Any]) -> None:
        import mlflow

        self._safely("log params", mlflow.log_params, {k: _text(v) for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Numbers only (bools as 0/1); other values are skipped."""
        import mlflow

        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, numbers.Real)}
        if numeric:
            self._safely("log metrics", mlflow.log_metrics, numeric, step=step)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        import mlflow

        p = Path(path)
        if self.run_id is None:
            return
        if not p.exists():
            log.warning("mlflow: artifact %s does not exist, not logged", p)
        elif p.is_dir():
            self._safely(f"log artifacts {p}", mlflow.log_artifacts, str(p), artifact_path or p.name)
        else:
            self._safely(f"log artifact {p}", mlflow.log_artifact, str(p), artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        import mlflow

        if tags:
            self._safely("set tags", mlflow.set_tags, {k: _text(v) for k, v in tags.items()})


@contextlib.contextmanager
def stage_run(stage: str, params: Mapping[str, Any]) -> Iterator[StageRun]:
    """The MLflow run of one CLI stage (a child of ``$SPRINT_MLFLOW_PARENT_RUN_ID`` when set).

    Params are logged at once (lists joined by commas; MLflow truncates long values), the code's provenance (git
    commit, dirty tree, package versions: :mod:`sprint.provenance`) as tags.  The run is FINISHED when the block
    ends, KILLED when SIGTERM or Ctrl-C stops it (:class:`Terminated`) and FAILED when it raises; the exception
    propagates unchanged.
    """
    if not enabled():
        yield StageRun()
        return
    import mlflow

    tags = {"sprint.stage": stage, "sprint.run_group": os.environ.get(GROUP_ENV) or "standalone"}
    tags.update({f"sprint.{k}": _text(params[k]) for k in ("method", "seed", "target_speedup", "point")
                 if params.get(k) is not None})
    tags.update({f"sprint.{k}": v for k, v in provenance.flat().items()})
    if provenance.provenance()["git_commit"]:
        tags["mlflow.source.git.commit"] = provenance.provenance()["git_commit"]  # MLflow's own column
    tags.update(_env_tags())
    try:
        _locked(_use_store)
        active = _locked(mlflow.start_run, run_name=run_name(stage, params), tags=tags, nested=True,
                         parent_run_id=os.environ.get(PARENT_ENV) or None)
    except Exception as err:  # noqa: BLE001
        log.warning("mlflow: tracking unavailable at %s (%s: %s); continuing without it", tracking_uri(),
                    type(err).__name__, err)
        yield StageRun()
        return
    run = StageRun(active.info.run_id)
    run.log_params(params)
    body_done = False
    try:
        with active, _terminated_on_sigterm():
            try:
                yield run
            except BaseException as err:
                run.set_tags({"sprint.error": f"{type(err).__name__}: {err}"})
                if isinstance(err, (Terminated, KeyboardInterrupt)):
                    _locked(mlflow.end_run, "KILLED")  # stopped from outside, not failed
                raise
            body_done = True
    except Exception as err:
        if not body_done:
            raise
        log.warning("mlflow: could not close run %s: %s", run.run_id, err)


class Terminated(SystemExit):
    """SIGTERM (scancel, a Slurm time limit or preemption, Snakemake stopping its jobs) during a stage: the stage's
    MLflow run ends KILLED and the process exits with status 143 (128 + 15), as a process killed by it would."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)

    def __str__(self) -> str:
        return "terminated by SIGTERM"


@contextlib.contextmanager
def _terminated_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def log_to_stage_run(stage: str, tags: Mapping[str, str], metrics: Mapping[str, float]) -> str | None:
    """Add ``metrics`` to the latest FINISHED run of ``stage`` in the experiment that carries every tag of ``tags``
    (MLflow takes metrics after a run ended), so that the runs compare on a number measured by a later stage: the
    report adds the llama.cpp speedup to each model's evaluate run, beside its measured speedup.  Returns the run's
    id, None when there is none (or tracking is off); a store that refuses costs a warning."""
    if not enabled() or not metrics:
        return None
    import mlflow
    from mlflow.entities import Metric

    where = " and ".join([f"tags.`sprint.stage` = '{stage}'", "attributes.status = 'FINISHED'",
                          *(f"tags.`{k}` = '{v}'" for k, v in tags.items())])
    try:
        _locked(_use_store)
        found = _locked(mlflow.search_runs, output_format="list", max_results=1, filter_string=where,
                        order_by=["attributes.start_time DESC"])
        if not found:
            return None
        run_id = found[0].info.run_id
        client = mlflow.MlflowClient()
        now = int(time.time() * 1000)
        _locked(client.log_batch, run_id, metrics=[Metric(k, float(v), now, 0)
                                                   for k, v in metrics.items()])
        return run_id
    except Exception as err:  # noqa: BLE001 - tracking must not break a stage
        log.warning("mlflow: could not add %s to the %s run tagged %s: %s", ", ".join(metrics), stage, dict(tags), err)
        return None


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
    of one ``SPRINT_RUN_GROUP=... dvc repro``) share one parent. ``config`` is logged flattened as params.  The run
    stays active in this process until :func:`end_pipeline_run`.
    """
    group = group or new_group_id()
    if not enabled():
        return None, group
    import mlflow

    try:
        _locked(_use_store)
        found = _locked(mlflow.search_runs, output_format="list", max_results=1,
                        filter_string=f"tags.`sprint.run_group` = '{group}' and tags.`sprint.stage` = 'pipeline'")
        if found:
            run_id = found[0].info.run_id
            current = mlflow.active_run()
            if current is None or current.info.run_id != run_id:
                _locked(mlflow.start_run, run_id=run_id, nested=current is not None)
            return run_id, group
        active = _locked(mlflow.start_run, run_name=f"pipeline/{group}",
                         tags={"sprint.stage": "pipeline", "sprint.run_group": group})
    except Exception as err:  # noqa: BLE001
        log.warning("mlflow: tracking unavailable at %s (%s: %s); continuing without it", tracking_uri(),
                    type(err).__name__, err)
        return None, group
    if config:
        StageRun(active.info.run_id).log_params(_flatten(config))
    return active.info.run_id, group


def end_pipeline_run(run_id: str | None, status: str = "FINISHED") -> None:
    """Mark the parent run FINISHED / FAILED (no-op for None or when tracking is off)."""
    if not run_id or not enabled():
        return
    import mlflow

    try:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            _locked(mlflow.end_run, status)
        else:
            _locked(mlflow.MlflowClient().set_terminated, run_id, status)
    except Exception as err:  # noqa: BLE001
        log.warning("mlflow: could not mark pipeline run %s %s: %s", run_id, status, err)


_PIPELINE: dict[str, str] = {}  # the parent run this process opened


def open_pipeline_run(config: Mapping[str, Any]) -> None:
    """Snakemake's ``onstart``: open the parent run and export its id and the run group, so every job's ``sprint``
    command nests its run under it.  A parent id already in the environment (an outer orchestrator's) is kept."""
    if not enabled():
        return
    if os.environ.get(PARENT_ENV):
        os.environ.setdefault(GROUP_ENV, os.environ[PARENT_ENV])
        return
    run_id, group = start_pipeline_run(config, os.environ.get(GROUP_ENV) or None)
    os.environ[GROUP_ENV] = group
    if run_id:
        os.environ[PARENT_ENV] = _PIPELINE["id"] = run_id


def close_pipeline_run(status: str) -> None:
    """Snakemake's ``onsuccess`` (FINISHED) / ``onerror`` (FAILED): close the parent run this process opened."""
    if _PIPELINE.get("id"):
        end_pipeline_run(_PIPELINE.pop("id"), status)
