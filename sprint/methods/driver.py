"""Pruning driver: the stopping rule shared by every method, and the pruned-checkpoint writer.

Stopping rule (every method): a target speedup X gives the latency bound τ = dense_s / X; the estimated latency
of a pruned model is dense_s − n_attn·t_attn_s − n_mlp·t_mlp_s (latency table); sublayers are removed until the
estimate is ≤ τ.  Greedy methods remove in an order that does not depend on the target, so one run can save a
checkpoint at each of several targets on its way to the largest (each checkpoint is exactly what a run to that
target alone would produce; its ``wall_time_s`` is the time spent up to that point).
"""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

import torch

from sprint.data.calibration import load_calibration
from sprint.model.checkpoint import save_dense, save_pruned
from sprint.errors import SprintError
from sprint.measure.table import LatencyTable, load_latency
from sprint.methods import ONE_SHOT, PruneConfig, method, point_name  # noqa: F401 - PruneConfig: part of sprint.methods.driver's API
from sprint.model.loading import load_config, load_model
from sprint.model.modeling_sprint import adapter_for
from sprint.provenance import provenance
from sprint.methods.base import Pruner
from sprint.model.sublayers import SublayerView, sublayer_name

log = logging.getLogger("sprint")



def build_pruner(view: SublayerView, calibration: torch.Tensor, latency: LatencyTable, cfg: PruneConfig,
                 progress: bool = True) -> Pruner:
    """The pruner of ``cfg.method`` (its registry entry, :mod:`sprint.methods`), configured from ``cfg``."""
    entry = method(cfg.method)
    return entry.pruner_class().from_config(view, calibration, latency, cfg, progress=progress, **entry.settings)


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
                progress: bool = True, on_step=None) -> Pruner:
    """Prune ``model`` in place until every target is met (a method of a one-shot kind, "weights" or "slicing": once,
    at its setting; ``latency`` may then be None).

    Callbacks: ``on_target(target, pruner, elapsed_s)`` when a target is reached; ``on_step(pruner, step_s,
    elapsed_s)`` once the pruner is built (``step_s`` None: ``elapsed_s`` is its set-up time) and after every
    removal step (an exception it raises stops pruning and propagates: the benchmark's step limit).
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
    pruner = build_pruner(view, calibration, latency, cfg, progress=progress)
    if on_step is not None:
        on_step(pruner, None, time.perf_counter() - start)
    pending = list(cfg.targets)
    with torch.inference_mode():
        while pending:
            while pending and latency.speedup(*pruner.counts()) >= pending[0] - 1e-12:
                if on_target is not None:
                    on_target(pending[0], pruner, time.perf_counter() - start)
                pending.pop(0)
            if pending:
                log.info("%s: iteration %d (est. speedup %.3fx -> %.3gx)", cfg.method, len(pruner.removed) + 1,
                         latency.speedup(*pruner.counts()), pending[0])
                t0 = time.perf_counter()
                pruner.step()
                if on_step is not None:
                    now = time.perf_counter()
                    on_step(pruner, now - t0, now - start)
    return pruner


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
                        output: str | list[str], device: str = "auto", dtype: str = "auto") -> dict[float | None, dict]:
    """CLI entry: validate every input before loading the model, prune, write one checkpoint per target.

    Returns {target: pruning record}; a one-shot method writes one checkpoint, returned as {None: record}, and needs
    no latency table: an ordinary (dense-shaped) one for kind "weights", a SPRINT one (carried code) for "slicing".
    """
    config.validate()
    outputs = [output] if isinstance(output, (str, Path)) else list(output)
    kind = method(config.method).kind
    if kind in ONE_SHOT:
        if len(outputs) != 1:
            raise SprintError(f"{config.method} writes one checkpoint: give one --output, not {len(outputs)}")
        tokens = load_calibration(calibration)
        adapter_for(load_config(model))  # unsupported family: fail now
        net, tokenizer = load_model(model, device=device, dtype=dtype)
        t0 = time.perf_counter()
        pruner = prune_model(net, tokens, None, config)
        record = one_shot_record(model, config, pruner, time.perf_counter() - t0, tokens)
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
    net, tokenizer = load_model(model, device=device, dtype=dtype)
    records: dict[float, dict] = {}
    saving_s = 0.0  # time spent writing earlier targets' checkpoints is not pruning time

    def save(target: float, pruner: Pruner, elapsed: float) -> None:
        nonlocal saving_s
        t0 = time.perf_counter()
        record = pruning_record(model, config, target, pruner, elapsed - saving_s, tokens, table)
        save_pruned(net, tokenizer, by_target[target], record)
        records[target] = record
        saving_s += time.perf_counter() - t0
        log.info("%s x%g: %d sublayers removed, est. %.3fx, %.1fs -> %s", config.method, target,
                 len(record["removed"]), record["estimated_speedup"], record["wall_time_s"], by_target[target])

    prune_model(net, tokens, table, config, on_target=save)
    return records


def _as_list(t) -> list[float]:
    return list(t) if isinstance(t, (list, tuple)) else [float(t)]
