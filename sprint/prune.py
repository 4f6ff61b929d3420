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
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sprint.calibration import load_calibration
from sprint.checkpoint import save_pruned
from sprint.errors import SprintError
from sprint.latency import LatencyTable, load_latency
from sprint.methods import METHODS, method
from sprint.models import load_config, load_model
from sprint.modeling_sprint import adapter_for
from sprint.provenance import provenance
from sprint.pruner import Pruner
from sprint.sublayers import SublayerView, sublayer_name

log = logging.getLogger("sprint")



@dataclass
class PruneConfig:
    method: str
    target_speedup: float | list[float]
    seed: int = 0
    alpha: int = 8
    beta: int = 5
    tune_ratio: float = 1.0
    reference: str = "dense"
    distance: str = "frobenius"
    batch_size: int = 8
    store_dtype: str | None = None  # dtype of checkpoints / dense reference (default: the model's)
    # SLEB / BlockPruner only: score candidates' perplexity on the first N calibration windows (None = all, as in
    # their papers).  A budget option for small machines: their greedy search costs ~S²/2 sublayer passes per step.
    ppl_windows: int | None = None

    @property
    def targets(self) -> list[float]:
        t = self.target_speedup
        return sorted(t) if isinstance(t, (list, tuple)) else [float(t)]

    def validate(self) -> None:
        if self.method not in METHODS:
            raise SprintError(f"unknown method {self.method!r}: expected one of {', '.join(METHODS)}")
        for t in self.targets:
            if not t > 1.0:
                raise SprintError(f"target speedup {t} must be > 1 (it divides the dense latency)")
        if self.ppl_windows is not None and self.ppl_windows < 1:
            raise SprintError(f"ppl_windows must be >= 1 (or unset for all windows), got {self.ppl_windows}")
        for key in ("alpha", "beta", "batch_size"):
            if getattr(self, key) < 1:
                raise SprintError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 < self.tune_ratio <= 1.0:
            raise SprintError(f"tune_ratio must be in (0, 1], got {self.tune_ratio}")
        if self.reference not in ("dense", "current"):
            raise SprintError(f"reference must be 'dense' or 'current', got {self.reference!r}")
        if self.distance not in ("frobenius", "l1"):
            raise SprintError(f"distance must be 'frobenius' or 'l1', got {self.distance!r}")

    def as_params(self) -> dict:
        d = asdict(self)
        d["target_speedup"] = ",".join(f"{t:g}" for t in self.targets)
        return d


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


def prune_model(model, calibration: torch.Tensor, latency: LatencyTable, cfg: PruneConfig, on_target=None,
                progress: bool = True) -> Pruner:
    """Prune ``model`` in place until every target is met; ``on_target(target, pruner, elapsed_s)`` per target."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    view = SublayerView(model, batch_size=cfg.batch_size)
    latency.check_plausible(view.num_layers)
    check_reachable(cfg.method, view.num_layers, latency, cfg.targets)
    start = time.perf_counter()
    pruner = build_pruner(view, calibration, latency, cfg, progress=progress)
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
                pruner.step()
    return pruner


def pruning_record(model_name: str, cfg: PruneConfig, target: float, pruner: Pruner, elapsed: float,
                   calibration: torch.Tensor, latency: LatencyTable) -> dict:
    return {
        "method": cfg.method,
        "model": model_name,
        "target_speedup": target,
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


def prune_to_checkpoint(model: str, calibration: str, latency: str, config: PruneConfig,
                        output: str | list[str], device: str = "auto", dtype: str = "auto") -> dict[float, dict]:
    """CLI entry: validate every input before loading the model, prune, write one checkpoint per target.

    Returns {target: pruning record}.
    """
    config.validate()
    outputs = [output] if isinstance(output, (str, Path)) else list(output)
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
