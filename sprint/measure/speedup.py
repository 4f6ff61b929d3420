"""Measured speedups: a pruned model's generation time against the dense model's, timed in interleaved rounds
under the latency protocol, with a 95% CI; and the metrics fields and files the pipeline writes from them.
"""

from __future__ import annotations

import logging
import os
import statistics
from typing import Any, Callable

import torch

from sprint.errors import SprintError
from sprint.io import atomic_write_json
from sprint.model.checkpoint import pruning_summary
from sprint.measure.protocol import Protocol, estimate
from sprint.measure.timing import device_name, interleaved_rounds
from sprint.model.modeling_sprint import set_removed
from sprint.provenance import provenance

log = logging.getLogger("sprint")


def with_removed(model, removed: list) -> Callable[[], Any]:
    """A subject for :func:`interleaved_rounds`: ``model`` with exactly ``removed`` sublayers skipped."""

    def subject():
        set_removed(model, removed)
        return model

    return subject



def measure_speedup(dense: Callable[[], Any], pruned: Callable[[], Any], protocol: Protocol,
                    desc: str = "speedup") -> dict[str, Any]:
    """Measured speedup of ``pruned`` over ``dense``: :func:`measure_speedups` with one pruned subject."""
    return measure_speedups(dense, {"pruned": pruned}, protocol, desc)["pruned"]



def measure_speedups(dense: Callable[[], Any], pruned: dict[str, Callable[[], Any]], protocol: Protocol,
                     desc: str = "speedup") -> dict[str, dict[str, Any]]:
    """Measured speedup of every ``pruned`` subject over ``dense`` (subjects as in :func:`interleaved_rounds`),
    all timed in the same interleaved rounds: name -> the median over rounds of the per-round ratio dense time /
    pruned time, its 95% CI, spread and every raw sample.  Rounds continue until every ratio is within
    ``protocol.max_spread``.  Timing many models together times the dense model once per round for all of them,
    and takes every ratio under the same conditions; it holds every model in memory at once."""
    if "dense" in pruned:
        raise ValueError("measure_speedups: 'dense' names the reference subject; give the pruned ones other names")
    names = list(pruned)

    def ratios(s: dict[str, list[float]], name: str) -> list[float]:
        return [d / p for d, p in zip(s["dense"], s[name])]

    def summarize(s: dict[str, list[float]]) -> dict:
        return {name: estimate(r, statistics.median(r), protocol.estimator) for name in names
                for r in [ratios(s, name)]}

    samples, summary, attempt = interleaved_rounds({"dense": dense, **pruned}, protocol, summarize, desc)
    device = device_name(next(dense().parameters()).device)
    out = {}
    for name in names:
        est = summary[name]
        out[name] = {
            "estimate": est["value"], "estimator": protocol.estimator, "median": statistics.median(ratios(samples, name)),
            "ci95": est["ci95"], "spread": est["spread"], "max_spread": protocol.max_spread,
            "rounds": len(samples["dense"]), "attempts": attempt, "ratios": ratios(samples, name),
            "dense_s": samples["dense"], "pruned_s": samples[name],
            "dense_latency_s": statistics.median(samples["dense"]), "latency_s": statistics.median(samples[name]),
            "subjects": len(names) + 1,
            "protocol": protocol.to_dict(), "prompt_len": protocol.prompt_len, "gen_len": protocol.gen_len,
            "warmup": protocol.warmup, "device": device, "torch_threads": protocol.threads or torch.get_num_threads(),
        }
    return out








def latency_protocol(latency: str | os.PathLike, overrides: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """(table, protocol): the latency table at ``latency`` and the protocol that measures speedups against it, at
    the table's prompt / generation lengths; ``overrides`` replace the table's recorded protocol settings (warmup,
    min_rounds, max_rounds, max_spread, attempts, ...)."""
    from sprint.measure.protocol import Protocol
    from sprint.measure.table import load_latency

    table = load_latency(latency)
    if table.prompt_len < 1 or table.gen_len < 1:
        raise SprintError(f"latency file {latency}: 'prompt_len' and 'gen_len' must be >= 1 to measure latency")
    recorded = table.extra.get("protocol") if isinstance(table.extra.get("protocol"), dict) else {}
    fields = set(Protocol.__dataclass_fields__) - {"prompt_len", "gen_len"}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}  # a flag not given keeps the table's
    settings = {k: v for k, v in {**recorded, **given}.items() if k in fields and v is not None}
    protocol = Protocol(prompt_len=table.prompt_len, gen_len=table.gen_len, **settings)
    protocol.validate()
    return table, protocol



def _speedup_record(result: dict[str, Any], dense_model: str, table: Any) -> dict[str, Any]:
    """The metrics fields of one measured speedup (``result`` from :func:`sprint.measure.speedup.measure_speedups`)."""
    result = {**result, "dense_model": str(dense_model),
              "latency_table": {"device": table.device, "model": table.model, "dense_s": table.dense_s}}
    if table.device != result["device"]:
        log.warning("latency table was measured on %s, this run on %s: estimated and measured speedups compare two "
                    "machines", table.device, result["device"])
    return {"measured_speedup": result["estimate"], "measured_speedup_ci": result["ci95"],
            "latency_s": result["latency_s"], "dense_latency_s": result["dense_latency_s"], "speedup": result}



def _log_kernels(name: str, kernels: dict[str, Any]) -> None:
    if "sparse_linears" in kernels:  # a 2:4-sparse model
        log.info("%s: 2:4-sparse, timed with %s kernels (%d linears sparse, %d dense)%s", name, kernels["kernels"],
                 kernels["sparse_linears"], kernels["dense_linears"],
                 f": {kernels['reason']}" if kernels.get("reason") else "")



def measured_speedup(model: Any, dense_model: str, table: Any, protocol: Any, device: str, dtype: str) -> dict:
    """The speedup a user gets: ``model`` (as loaded from its checkpoint, carried code included) timed against a
    fresh load of the dense model ``dense_model`` by the latency protocol (interleaved rounds, median ratio with
    its 95% CI; see :class:`sprint.measure.protocol.Protocol`), at the latency table's prompt and generation lengths.

    The dense model's own evaluation times it against a second copy of itself: its speedup is 1 up to noise, a
    check of the protocol on every run.  Both models are held at once (twice the model's memory).  A 2:4-sparse
    ``model`` is first switched to sparse kernels where ``protocol.sparse_kernels`` and the hardware allow
    (:func:`sprint.measure.sparse_kernels.use_sparse_kernels`, in place: call this after the accuracy run); the record's
    ``speedup.kernels`` says which kernels ran.
    """
    from sprint.measure.sparse_kernels import use_sparse_kernels
    from sprint.measure.speedup import measure_speedup
    from sprint.model.loading import load_model

    dense, _ = load_model(dense_model, device=device, dtype=dtype)
    kernels = use_sparse_kernels(model, protocol.sparse_kernels)
    _log_kernels(str(model.name_or_path) if hasattr(model, "name_or_path") else "model", kernels)
    record = _speedup_record({**measure_speedup(lambda: dense, lambda: model, protocol, desc="measured speedup"),
                              "kernels": kernels}, dense_model, table)
    log.info("measured speedup %.3fx, 95%% CI [%.3f, %.3f] (±%.1f%%, %d rounds)", record["measured_speedup"],
             *record["measured_speedup_ci"], 100 * record["speedup"]["spread"], record["speedup"]["rounds"])
    return record



def speedups_to_file(checkpoints: list[str], dense_model: str, latency: str | os.PathLike,
                     output: str | os.PathLike, device: str, dtype: str,
                     protocol: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measured speedups of many checkpoints in one job, written atomically to ``output`` (JSON).

    The dense model, a second copy of it and every checkpoint (each loaded as ``from_pretrained`` loads it, carried
    code included) are timed in the same interleaved rounds (:func:`sprint.measure.speedup.measure_speedups`): the dense
    model is timed once per round for all of them, every ratio is taken under the same conditions, and the copy's
    ratio (1 up to noise) checks the protocol.  Every model is held in memory at once; for models too large for
    that, time each checkpoint apart (``sprint evaluate --latency``).

    ``output`` holds ``{"models": {"dense" | checkpoint: {pruning summary, measured_speedup,
    measured_speedup_ci, latency_s, dense_latency_s, speedup}}, "provenance": ...}``.
    """
    from sprint.measure.sparse_kernels import use_sparse_kernels
    from sprint.measure.speedup import measure_speedups
    from sprint.model.loading import load_config, load_model

    table, speed = latency_protocol(latency, protocol)
    records = {str(c): pruning_summary(c) for c in checkpoints}
    for checkpoint, record in records.items():
        if record["method"] == "dense":
            raise SprintError(f"{checkpoint}: no pruning.json, so not a pruned checkpoint to time")
    load_config(dense_model)  # a missing dense model fails before any checkpoint is loaded
    dense, _ = load_model(dense_model, device=device, dtype=dtype)
    copy, _ = load_model(dense_model, device=device, dtype=dtype)
    models = {"dense copy": copy}
    kernels = {}
    for checkpoint in records:
        models[checkpoint], _ = load_model(checkpoint, device=device, dtype=dtype, carried_code=True)
        kernels[checkpoint] = use_sparse_kernels(models[checkpoint], speed.sparse_kernels)
        _log_kernels(checkpoint, kernels[checkpoint])
    results = measure_speedups(lambda: dense, {name: (lambda m=m: m) for name, m in models.items()}, speed,
                               desc=f"measured speedups ({len(models)} models)")
    out = {"dense": {**pruning_summary(dense_model), "model": str(dense_model),
                     **_speedup_record(results["dense copy"], dense_model, table)}}
    for checkpoint, record in records.items():
        out[checkpoint] = {**record, "model": checkpoint,
                           **_speedup_record({**results[checkpoint], "kernels": kernels[checkpoint]}, dense_model, table)}
        log.info("%s: measured speedup %.3fx, 95%% CI [%.3f, %.3f] (estimated %.3fx)", checkpoint,
                 out[checkpoint]["measured_speedup"], *out[checkpoint]["measured_speedup_ci"],
                 record["estimated_speedup"])
    log.info("dense vs a copy of itself: %.3fx, 95%% CI [%.3f, %.3f] (%d rounds)", out["dense"]["measured_speedup"],
             *out["dense"]["measured_speedup_ci"], out["dense"]["speedup"]["rounds"])
    document = {"models": out, "latency": str(latency), "dense_model": str(dense_model),
                "protocol": speed.to_dict(), "provenance": provenance()}
    atomic_write_json(output, document)
    log.info("measured speedups -> %s", output)
    return document

