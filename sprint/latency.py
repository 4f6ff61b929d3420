"""The latency table (per-sublayer generation-time savings) and how it is measured.

Authors' protocol: time HF ``generate`` (batch 1, random prompt, exactly ``gen_len`` new tokens, KV cache on) for
the dense model (T1), with a fraction of MLP sublayers removed (T2) and with the same fraction of attention
sublayers removed (T3); t_mlp = (T1 - T2) / n and t_attn = (T1 - T3) / n.  During pruning the latency of a
candidate model is *estimated* from that table; real speedups are measured afterwards.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sprint.errors import SprintError
from sprint.io import atomic_write_json
from sprint.modeling_sprint import decoder_layers, removed_sublayers, set_removed

log = logging.getLogger("sprint")

_REQUIRED = ("dense_s", "t_attn_s", "t_mlp_s")
_OPTIONAL = {"device": "unknown", "model": "unknown", "prompt_len": 0, "gen_len": 0}


@dataclass
class LatencyTable:
    """Dense generation time and the time saved by removing one attention / one MLP sublayer (seconds)."""

    device: str
    model: str
    prompt_len: int
    gen_len: int
    dense_s: float
    t_attn_s: float
    t_mlp_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def saving(self, kind: str) -> float:
        """Seconds saved by removing one sublayer of ``kind`` ("attn" or "mlp")."""
        if kind not in ("attn", "mlp"):
            raise ValueError(f"sublayer kind must be 'attn' or 'mlp', got {kind!r}")
        return self.t_attn_s if kind == "attn" else self.t_mlp_s

    def estimate(self, n_attn: int, n_mlp: int) -> float:
        """Estimated generation time with n_attn attention and n_mlp MLP sublayers removed."""
        return self.dense_s - n_attn * self.t_attn_s - n_mlp * self.t_mlp_s

    def speedup(self, n_attn: int, n_mlp: int) -> float:
        """Estimated speedup dense_s / estimate (inf once the estimate reaches 0)."""
        est = self.estimate(n_attn, n_mlp)
        return self.dense_s / est if est > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """Flat dict: the seven fields with the extra keys merged in."""
        d = asdict(self)
        extra = d.pop("extra")
        return {**d, **extra}


def load_latency(path: str | os.PathLike) -> LatencyTable:
    """Read a latency JSON; only dense_s, t_attn_s and t_mlp_s (positive numbers) are required."""
    path = Path(path)
    if not path.is_file():
        raise SprintError(f"latency file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}"
        raise SprintError(f"latency file {path}: invalid JSON at {where}: {err.msg}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise SprintError(f"latency file {path} cannot be read: {err}") from err
    if not isinstance(data, dict):
        raise SprintError(f"latency file {path}: expected a JSON object, got {type(data).__name__}")
    for key in _REQUIRED:
        if key not in data:
            raise SprintError(f"latency file {path}: missing key {key!r} (required: {', '.join(_REQUIRED)})")
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise SprintError(f"latency file {path}: {key!r} must be a positive number of seconds, got {value!r}")
    for key in ("prompt_len", "gen_len"):
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SprintError(f"latency file {path}: {key!r} must be a non-negative integer, got {value!r}")
    opt = {k: data.get(k, default) for k, default in _OPTIONAL.items()}
    extra = {k: v for k, v in data.items() if k not in _OPTIONAL and k not in _REQUIRED}
    return LatencyTable(
        device=str(opt["device"]), model=str(opt["model"]), prompt_len=opt["prompt_len"], gen_len=opt["gen_len"],
        **{k: float(data[k]) for k in _REQUIRED}, extra=extra,
    )


def save_latency(table: LatencyTable, path: str | os.PathLike) -> None:
    atomic_write_json(path, table.to_dict())


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model name and the number of usable cores."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            name = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name} ({cores} cores)"


def _random_prompt(model, prompt_len: int, seed: int) -> torch.Tensor:
    """Seeded random prompt ids [1, prompt_len], avoiding the model's bos/eos/pad ids."""
    vocab = model.config.vocab_size
    special = set()
    for cfg in (model.config, getattr(model, "generation_config", None)):
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(cfg, key, None)
            special.update(v for v in (value if isinstance(value, (list, tuple)) else [value]) if v is not None)
    allowed = torch.ones(vocab, dtype=torch.bool)
    allowed[[i for i in special if 0 <= i < vocab]] = False
    pool = allowed.nonzero().squeeze(1)
    pick = torch.randint(0, pool.numel(), (1, prompt_len), generator=torch.Generator().manual_seed(seed))
    return pool[pick]


def _pad_id(model) -> int:
    gc = getattr(model, "generation_config", None)
    for value in (getattr(gc, "pad_token_id", None), getattr(gc, "eos_token_id", None), model.config.eos_token_id):
        value = value[0] if isinstance(value, (list, tuple)) and value else value
        if isinstance(value, int):
            return value
    return 0


@torch.inference_mode()
def measure_generate_latency(
    model, prompt_len: int, gen_len: int, warmup: int = 1, repeats: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Time ``generate`` of exactly gen_len tokens after a random prompt (batch 1, greedy, KV cache on).

    Returns median_s (the reported number), mean_s, times_s and the device name.
    """
    if prompt_len < 1 or gen_len < 1 or repeats < 1 or warmup < 0:
        raise SprintError(
            f"latency measurement needs prompt_len, gen_len, repeats >= 1 and warmup >= 0, got "
            f"prompt_len={prompt_len}, gen_len={gen_len}, repeats={repeats}, warmup={warmup}"
        )
    device = next(model.parameters()).device
    input_ids = _random_prompt(model, prompt_len, seed).to(device)
    kwargs = dict(
        attention_mask=torch.ones_like(input_ids), max_new_tokens=gen_len, min_new_tokens=gen_len, do_sample=False,
        use_cache=True, pad_token_id=_pad_id(model),
    )
    cuda = device.type == "cuda"
    times = []
    for i in range(warmup + repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            model.generate(input_ids, **kwargs)
            end.record()
            torch.cuda.synchronize(device)
            elapsed = start.elapsed_time(end) / 1000.0
        else:
            t0 = time.perf_counter()
            model.generate(input_ids, **kwargs)
            elapsed = time.perf_counter() - t0
        if i >= warmup:
            times.append(elapsed)
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times), "times_s": times,
            "device": device_name(device)}


def profile_latency(
    model, model_name: str, prompt_len: int, gen_len: int, warmup: int, repeats: int, fraction: float = 0.25,
    seed: int = 0,
) -> LatencyTable:
    """Measure the latency table: dense, n MLPs removed, n attentions removed (layers L-2, L-3, ...).

    The three models are timed in ``repeats`` interleaved rounds (each with its own ``warmup`` runs) and the
    medians compared; a saving that is not positive means the machine was too noisy and is an error.
    """
    base = removed_sublayers(model)
    num_layers = len(decoder_layers(model))
    if not 0 < fraction < 1:
        raise SprintError(f"latency profiling fraction must be in (0, 1), got {fraction}")
    if num_layers < 2:
        raise SprintError(f"latency profiling needs at least 2 decoder layers, the model has {num_layers}")
    n = min(max(1, round(fraction * num_layers)), num_layers - 1)
    upper = list(range(num_layers - 2, num_layers - 2 - n, -1))
    configs = {"dense": [], "mlp": [(i, "mlp") for i in upper], "attn": [(i, "attn") for i in upper]}
    clash = sorted(set(base) & {r for rs in configs.values() for r in rs})
    if clash:
        raise SprintError(f"model {model_name} already has sublayers {clash} removed: profile the dense model")
    samples: dict[str, list[float]] = {name: [] for name in configs}
    device = ""
    try:
        # Round-robin over the three models, so that a slow drift of the machine hits them alike.
        for _ in tqdm(range(repeats), desc="latency profile", unit="round"):
            for name, removed in configs.items():
                set_removed(model, base + removed)
                result = measure_generate_latency(model, prompt_len, gen_len, warmup, 1, seed)
                samples[name] += result["times_s"]
                device = result["device"]
    finally:
        set_removed(model, base)
    times = {name: {"median_s": statistics.median(t), "mean_s": statistics.fmean(t), "times_s": t, "device": device}
             for name, t in samples.items()}
    for name, removed in configs.items():
        log.info("latency %s (%d removed): median %.4f s", name, len(removed), times[name]["median_s"])
    t1 = times["dense"]["median_s"]
    t_mlp, t_attn = (t1 - times["mlp"]["median_s"]) / n, (t1 - times["attn"]["median_s"]) / n
    if t_mlp <= 0 or t_attn <= 0:
        raise SprintError(
            f"latency timing too noisy: removing {n} sublayers did not reduce the measured time "
            f"(dense {t1:.4f} s, MLPs removed {times['mlp']['median_s']:.4f} s, attention removed "
            f"{times['attn']['median_s']:.4f} s); use a larger --gen-len or --repeats"
        )
    extra = {"n_removed": n, "fraction": fraction, "warmup": warmup, "repeats": repeats, "times": times,
             "dtype": str(model.dtype), "torch_threads": torch.get_num_threads()}
    return LatencyTable(device=times["dense"]["device"], model=model_name, prompt_len=prompt_len, gen_len=gen_len,
                        dense_s=t1, t_attn_s=t_attn, t_mlp_s=t_mlp, extra=extra)
