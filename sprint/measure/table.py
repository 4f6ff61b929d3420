"""The latency table: the dense model's generation time and the time one attention / one MLP sublayer's removal
saves (measured by :mod:`sprint.measure.profile`).  During pruning a candidate model's latency is *estimated* from
it (the stopping rule, and SPRINT's importance η = ζ / t); real speedups are measured afterwards
(:mod:`sprint.measure.speedup`).  No torch."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sprint.errors import SprintError
from sprint.io import atomic_write_json

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

    def check_plausible(self, num_layers: int, source: str = "latency table") -> None:
        """Refuse a table that cannot be true for a model of ``num_layers`` decoder layers: removing every
        sublayer would save as much time as the dense model takes, or more (the estimate would reach 0 s).

        A profiled table is judged at the lower ends of its savings' 95% CIs: a layer-dominated model (a tiny test
        model) can measure savings whose medians add up to the dense time within noise, which is not impossible.
        """
        ci = self.extra.get("ci95") if isinstance(self.extra.get("ci95"), dict) else {}

        def low(key: str, value: float) -> float:
            bounds = ci.get(key)
            ok = isinstance(bounds, (list, tuple)) and bounds and isinstance(bounds[0], (int, float))
            return min(value, float(bounds[0])) if ok else value

        t_attn, t_mlp = low("t_attn_s", self.t_attn_s), low("t_mlp_s", self.t_mlp_s)
        total = num_layers * (t_attn + t_mlp)
        if total >= self.dense_s:
            where = " (the lower ends of their 95% CIs)" if ci else ""
            raise SprintError(
                f"{source}: dense_s={self.dense_s:g} s but {num_layers} layers x (t_attn_s={t_attn:g} + "
                f"t_mlp_s={t_mlp:g}) s{where} = {total:g} s: removing every sublayer would save all the dense time "
                f"or more, which cannot be true (re-profile, or fix the hand-written table)"
            )

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
    for key in ("t_attn_s", "t_mlp_s"):
        if data[key] >= data["dense_s"]:
            raise SprintError(f"latency file {path}: {key}={data[key]!r} s is not below dense_s={data['dense_s']!r} s: "
                              f"one sublayer cannot take all of the model's time")
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



def given_table(path: str | os.PathLike, num_layers: int) -> LatencyTable:
    """A latency table measured before (or hand-written), checked for a model of ``num_layers`` decoder layers, with
    ``given`` (its path and SHA-256) added, so that the copy says it was not measured in this run."""
    table = load_latency(path)
    table.check_plausible(num_layers, f"latency file {path}")
    table.extra["given"] = {"path": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    return table

