"""Pruning driver: the stopping rule shared by every method, and the pruned-checkpoint writer.

Stopping rule (every method): a target speedup X gives the latency bound τ = dense_s / X; the estimated latency
of a pruned model is dense_s − n_attn·t_attn_s − n_mlp·t_mlp_s (latency table); sublayers are removed until the
estimate is ≤ τ.  Greedy methods remove in an order that does not depend on the target, so one run can save a
checkpoint at each of several targets on its way to the largest (each checkpoint is exactly what a run to that
target alone would produce; its ``wall_time_s`` is the time spent up to that point).
"""

from __future__ import annotations

import inspect
import logging
import os
import tempfile
import resource
import time
from pathlib import Path

import torch

from sprint.data.calibration import load_calibration
from sprint.model.checkpoint import read_record, save_dense, save_pruned
from sprint.errors import SprintError
from sprint.measure.table import LatencyTable, load_latency
from sprint.methods import ONE_SHOT, PruneConfig, method, point_name  # noqa: F401 - PruneConfig: part of sprint.methods.driver's API
from sprint.methods.journal import Journal, journal_dir, step_entry, tokens_sha256
from sprint.model.loading import load_config, load_model
from sprint.model.modeling_sprint import adapter_for
from sprint.provenance import provenance
from sprint.methods.base import Pruner
from sprint.model.sublayers import SublayerView, sublayer_name

log = logging.getLogger("sprint")



def build_pruner(view: SublayerView, calibration: torch.Tensor, latency: LatencyTable, cfg: PruneConfig,
                 progress: bool = True, execution: dict | None = None) -> Pruner:
    """The pruner of ``cfg.method`` (its registry entry, :mod:`sprint.methods`), configured from ``cfg``;
    ``execution``: settings that change where things are kept, never a number (SPRINT: ``dense_store``,
    ``spill_dir``, ``spill_checkpoints``), passed to the pruners that take them."""
    entry = method(cfg.method)
    cls = entry.pruner_class()
    extra = {"execution": execution} if execution and "execution" in inspect.signature(cls.from_config).parameters else {}
    return cls.from_config(view, calibration, latency, cfg, progress=progress, **entry.settings, **extra)


def admissible_sublayers(method_name: str, num_layers: int) -> list[int]:
    """Sublayers a method may ever remove (SPRINT: all but the last MLP; SLEB: all but the first/last layer)."""
    return method(method_name).admissible(num_layers)


def check_reachable(method: str, num_layers: int, latency: LatencyTable, targets: list[float]) -> None:
    """Fail before any heavy work if removing every admissible sublayer cannot reach the largest target."""
    allowed = admissible_sublayers(method, num_layers)
    n_attn = sum(sublayer_name(s)[1] == "attn" for s in allowed)
    best = latency.speedup(n_attn, len(allowed) - n_attn)
    if best < max(targets):
        raise SprintError(
            f"target speedup {max(targets):g}x is unreachable with {method}: removing all {len(allowed)} admissible "
            f"sublayers gives at most {best:.3g}x by the latency table (dense_s={latency.dense_s:g}, "
            f"t_attn_s={latency.t_attn_s:g}, t_mlp_s={latency.t_mlp_s:g})"
        )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prune_model(model, calibration: torch.Tensor, latency: LatencyTable | None, cfg: PruneConfig, on_target=None,
                progress: bool = True, on_step=None, execution: dict | None = None, journal: Journal | None = None,
                skip_targets: tuple = ()) -> Pruner:
    """Prune ``model`` in place until every target is met (a method of a one-shot kind, "weights" or "slicing": once,
    at its setting; ``latency`` may then be None).

    Callbacks: ``on_target(target, pruner, elapsed_s)`` when a target is reached; ``on_step(pruner, step_s,
    elapsed_s)`` once the pruner is built (``step_s`` None: ``elapsed_s`` is its set-up time) and after every
    removal step (an exception it raises stops pruning and propagates: the benchmark's step limit).
    ``journal``: resume from its steps and append each new one (:mod:`sprint.methods.journal`); ``elapsed_s``
    then counts the journaled steps' time too.  ``skip_targets``: targets whose checkpoints are already written
    (``on_target`` is not called for them).
    """
    cfg.validate()
    torch.manual_seed(cfg.seed)
    view = SublayerView(model, batch_size=cfg.batch_size)
    if method(cfg.method).kind in ONE_SHOT:  # each sets its own autograd mode (LLM-Pruner needs gradients)
        pruner = build_pruner(view, calibration, latency, cfg, progress=progress)
        pruner.run()
        return pruner
    latency.check_plausible(view.num_layers)
    check_reachable(cfg.method, view.num_layers, latency, cfg.targets)
    start = time.perf_counter()
    pruner = build_pruner(view, calibration, latency, cfg, progress=progress, execution=execution)
    steps = journal.steps() if journal is not None else []
    keep = _steps_before_missing(steps, latency, cfg.targets, skip_targets)
    if keep < len(steps):
        log.info("%s: a target's checkpoint is missing: replaying %d of %d journaled steps", cfg.method, keep,
                 len(steps))
        journal.truncate(keep)
        steps = steps[:keep]
    if steps:
        t0 = time.perf_counter()
        pruner.replay(steps)
        start -= steps[-1]["elapsed_s"]  # the time the journaled steps took
        log.info("%s: resumed after %d journaled steps (%d sublayers removed) in %.1fs", cfg.method, len(steps),
                 len(pruner.removed), time.perf_counter() - t0)
    if journal is not None:
        journal.start()
    if on_step is not None:
        on_step(pruner, None, time.perf_counter() - start)
    pending = list(cfg.targets)
    with torch.inference_mode():
        while pending:
            while pending and latency.speedup(*pruner.counts()) >= pending[0] - 1e-12:
                if on_target is not None and pending[0] not in skip_targets:
                    on_target(pending[0], pruner, time.perf_counter() - start)
                pending.pop(0)
            if pending:
                log.info("%s: iteration %d (est. speedup %.3fx -> %.3gx)", cfg.method, len(pruner.removed) + 1,
                         latency.speedup(*pruner.counts()), pending[0])
                t0 = time.perf_counter()
                removals = pruner.step()
                if journal is not None:
                    journal.append(len(steps), step_entry(pruner, removals, time.perf_counter() - start))
                    steps.append(None)
                if on_step is not None:
                    now = time.perf_counter()
                    on_step(pruner, now - t0, now - start)
    return pruner


def _steps_before_missing(steps: list[dict], latency: LatencyTable, targets, written) -> int:
    """How many journaled steps to replay: all of them, unless a target reached within them has no checkpoint
    (``written``: the targets whose checkpoints exist); then the steps up to where that target was reached, so that
    its checkpoint is saved from the model state it was reached at (the later steps are recomputed, identically).
    The pipeline loses such checkpoints when it deletes a killed job's output folder while the journal lives
    elsewhere (``sprint prune --journal``)."""
    n_attn = n_mlp = 0
    for i, step in enumerate(steps):
        for t in targets:
            if t not in written and latency.speedup(n_attn, n_mlp) >= t - 1e-12:
                return i
        for r in step["removals"]:
            n_attn, n_mlp = (n_attn + 1, n_mlp) if r["kind"] == "attn" else (n_attn, n_mlp + 1)
    return len(steps)  # a target reached after the last step is saved before the next one, as without a journal


def pruning_record(model_name: str, cfg: PruneConfig, target: float, pruner: Pruner, elapsed: float,
                   calibration: torch.Tensor, latency: LatencyTable) -> dict:
    return {
        "method": cfg.method,
        "model": model_name,
        "target_speedup": target,
        "point": point_name(target),
        "estimated_speedup": latency.speedup(*pruner.counts()),
        "estimated_latency_s": pruner.estimated_latency(),
        "wall_time_s": elapsed,
        "num_tunings": pruner.num_tunings,
        "peak_rss_mb": peak_rss_mb(),
        "num_layers": pruner.view.num_layers,
        "params": {
            **cfg.as_params(),
            "target_speedup": target,
            "calibration_n": int(calibration.shape[0]),
            "calibration_seq_len": int(calibration.shape[1]),
            "latency_device": latency.device,
            "dense_s": latency.dense_s,
            "t_attn_s": latency.t_attn_s,
            "t_mlp_s": latency.t_mlp_s,
        },
        "removed": [r.to_dict() for r in pruner.removed],
        "provenance": provenance(),
    }


def one_shot_point(cfg: PruneConfig) -> str:
    """The point a one-shot method's run writes: its weight setting (2of4, u50) or slicing ratio (s25)."""
    kind = method(cfg.method).kind
    if kind == "slicing":
        return point_name(slicing=cfg.slicing)
    if kind == "structured":
        return point_name(structured_ratio=cfg.structured_ratio)
    return point_name(pattern=cfg.pattern, sparsity=cfg.sparsity)


def one_shot_record(model_name: str, cfg: PruneConfig, pruner, elapsed: float, calibration: torch.Tensor) -> dict:
    """pruning.json of a one-shot method (kind "weights" or "slicing"): no target, no estimate (its speed is
    measured), and what the pruner reports about its result (the zeros; the sliced width)."""
    return {
        "method": cfg.method,
        "model": model_name,
        "target_speedup": None,
        "point": one_shot_point(cfg),
        "estimated_speedup": None,
        **pruner.record(),
        "wall_time_s": elapsed,
        "num_tunings": 0,
        "peak_rss_mb": peak_rss_mb(),
        "num_layers": pruner.view.num_layers,
        "params": {**cfg.as_params(), "calibration_n": int(calibration.shape[0]),
                   "calibration_seq_len": int(calibration.shape[1])},
        "removed": [],
        "provenance": provenance(),
    }


def prune_to_checkpoint(model: str, calibration: str, latency: str | None, config: PruneConfig,
                        output: str | list[str], device: str = "auto", dtype: str = "auto",
                        execution: dict | None = None, resume: bool = True,
                        journal_path: str | os.PathLike | None = None) -> dict[float | None, dict]:
    """CLI entry: validate every input before loading the model, prune, write one checkpoint per target.

    ``execution``: where things are kept (never a number): ``host_memory`` / ``gpu_memory`` budgets (bytes; the
    plan, :mod:`sprint.methods.plan`, is checked against them before the model is loaded, and decides whether the
    checkpoints are spilled to disk), ``dense_store``, ``spill_dir`` (local disk; default $SPRINT_SPILL_DIR, else the
    temporary folder, $TMPDIR: a Slurm job's local scratch), ``offload`` (None, True / "auto", "memory" or "file":
    the decoder layers' weights kept off the execution device and moved there one sublayer at a time,
    :mod:`sprint.model.offload`; on one device, the same numbers).  ``resume``:
    a sublayer method journals every step (in ``journal_path``; default beside the last output) and a rerun
    continues from the journal (:mod:`sprint.methods.journal`).  A workflow manager that deletes a failed job's
    outputs (Snakemake, DVC) needs ``journal_path`` outside them; a target whose checkpoint is then missing is
    saved again from the journaled state it was reached at.

    Returns {target: pruning record}; a one-shot method writes one checkpoint, returned as {None: record}, and needs
    no latency table: an ordinary (dense-shaped) one for kind "weights", a SPRINT one (carried code) for "slicing".
    """
    config.validate()
    outputs = [output] if isinstance(output, (str, Path)) else list(output)
    kind = method(config.method).kind
    execution = dict(execution or {})
    store = offload_store(config.method, execution.get("offload"), device)
    spill = execution.get("spill_dir") or os.environ.get("SPRINT_SPILL_DIR") or tempfile.gettempdir()

    def load():
        if store is None:
            return load_model(model, device=device, dtype=dtype)
        from sprint.model.offload import load_offloaded

        return load_offloaded(model, device=device, dtype=dtype, store=store, spill_dir=spill)

    if kind in ONE_SHOT:
        if len(outputs) != 1:
            raise SprintError(f"{config.method} writes one checkpoint: give one --output, not {len(outputs)}")
        tokens = load_calibration(calibration)
        adapter_for(load_config(model))  # unsupported family: fail now
        net, tokenizer = load()
        t0 = time.perf_counter()
        pruner = prune_model(net, tokens, None, config)
        record = one_shot_record(model, config, pruner, time.perf_counter() - t0, tokens)
        if store is not None:
            record["offload"] = store
        (save_dense if kind == "weights" else save_pruned)(net, tokenizer, outputs[0], record)
        log.info("%s %s in %.1fs -> %s", config.method, record["point"], record["wall_time_s"], outputs[0])
        return {None: record}
    if latency is None:
        raise SprintError(f"{config.method} needs --latency: its stopping rule is the latency table's estimate")
    targets = config.targets
    if len(outputs) != len(targets):
        raise SprintError(f"{len(targets)} target speedups but {len(outputs)} output folders: give one per target")
    by_target = dict(zip(sorted(targets), [o for _, o in sorted(zip(_as_list(config.target_speedup), outputs))]))
    tokens = load_calibration(calibration)
    table = load_latency(latency)
    model_config = load_config(model)
    adapter_for(model_config)  # unsupported family: fail now
    table.check_plausible(model_config.num_hidden_layers, f"latency file {latency}")
    check_reachable(config.method, model_config.num_hidden_layers, table, targets)
    settings = execution_settings(model_config, tokens, config, device, dtype, execution)
    journal = None
    if resume:
        identity = {"model": str(model), "method": config.method,
                    **{k: v for k, v in config.as_params().items() if k != "target_speedup"},
                    "calibration_sha256": tokens_sha256(tokens), "dense_s": table.dense_s,
                    "t_attn_s": table.t_attn_s, "t_mlp_s": table.t_mlp_s, "dtype": dtype}
        journal = Journal(journal_path or journal_dir(outputs[-1]), identity)
        journal.steps()  # a journal of another run: fail before loading the model
    net, tokenizer = load()
    records: dict[float, dict] = {}
    saving_s = 0.0  # time spent writing earlier targets' checkpoints is not pruning time
    done = tuple(t for t in (journal.saved_targets if journal else []) if (Path(by_target[t]) / "pruning.json").is_file())
    for t in done:
        records[t] = read_record(by_target[t])

    def save(target: float, pruner: Pruner, elapsed: float) -> None:
        nonlocal saving_s
        t0 = time.perf_counter()
        record = pruning_record(model, config, target, pruner, elapsed - saving_s, tokens, table)
        if store is not None:
            record["offload"] = store
        save_pruned(net, tokenizer, by_target[target], record)
        records[target] = record
        if journal is not None:
            journal.target_saved(target)
        saving_s += time.perf_counter() - t0
        log.info("%s x%g: %d sublayers removed, est. %.3fx, %.1fs -> %s", config.method, target,
                 len(record["removed"]), record["estimated_speedup"], record["wall_time_s"], by_target[target])

    pruner = prune_model(net, tokens, table, config, on_target=save, execution=settings, journal=journal,
                         skip_targets=done)
    pruner.close()
    if journal is not None:
        journal.remove()
    return records


def offload_store(method_name: str, offload, device: str) -> str | None:
    """The offload store of ``--offload`` (None: no offload), or a one-line error for a method that cannot run
    offloaded (it edits weights outside the decoder layers' sublayers, or needs gradients through the whole model)."""
    from sprint.model.loading import resolve_device
    from sprint.model.offload import resolve_store

    dev = resolve_device(device)
    store = resolve_store(offload, "cuda" if dev == "auto" else dev)
    if store is not None and not getattr(method(method_name).pruner_class(), "supports_offload", False):
        raise SprintError(f"--offload does not support {method_name}: it changes weights outside the decoder layers' "
                          "sublayers or needs gradients through the whole model; run it without --offload")
    return store


def execution_settings(model_config, tokens: torch.Tensor, config: PruneConfig, device: str, dtype: str,
                       execution: dict) -> dict:
    """Check the plan against the budgets (one-line SprintError naming the term) and turn ``execution`` into the
    pruner's settings: checkpoints spilled to disk when the plan's host total exceeds ``host_memory``, then fewer Gram
    statistics held at once (``max_stats``) if it still does."""
    from sprint.methods.plan import plan_within, shapes_from_config
    from sprint.model.loading import resolve_device, resolve_dtype

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, "cuda" if dev == "auto" else dev)
    shapes = shapes_from_config(model_config)
    host_memory, gpu_memory = execution.get("host_memory"), execution.get("gpu_memory")
    gpus = torch.cuda.device_count() if dev == "auto" else 1
    offload = offload_store(config.method, execution.get("offload"), device) or False
    plan = plan_within(shapes, int(tokens.shape[0]), int(tokens.shape[1]), config,
                       device="cpu" if dev == "cpu" else "cuda", gpus=1 if offload else max(gpus, 1),
                       dtype=str(torch_dtype).replace("torch.", ""), host_memory=host_memory, offload=offload,
                       model=str(model_config.name_or_path or "model"))
    plan.check(host_memory, gpu_memory)
    settings = {"dense_store": execution.get("dense_store", "disk"),
                "spill_dir": execution.get("spill_dir") or os.environ.get("SPRINT_SPILL_DIR") or tempfile.gettempdir(),
                "spill_checkpoints": "checkpoints" in plan.disk}
    if plan.counts.get("max_stats"):
        settings["max_stats"] = plan.counts["max_stats"]
    log.info("plan: host %.2f GiB (%s), GPU %.2f GiB, local disk %.2f GiB%s", plan.host_peak / 2**30,
             ", ".join(f"{k} {v / 2**30:.2f}" for k, v in plan.host.items() if v), plan.gpu_peak / 2**30,
             plan.disk_total / 2**30, "; checkpoints on disk" if settings["spill_checkpoints"] else "")
    if "max_stats" in settings:
        log.info("plan: at most %d Gram statistics held at once to fit the host budget", settings["max_stats"])
    return settings


def _as_list(t) -> list[float]:
    return list(t) if isinstance(t, (list, tuple)) else [float(t)]
