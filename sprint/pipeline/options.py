"""The option groups that several commands share, as flags and back as settings: the latency protocol's flags
(:class:`sprint.measure.protocol.Protocol`) and one flag per :class:`sprint.methods.PruneConfig` field.  The
parser (``cli``) adds them and the commands (``commands``) read them back, so neither imports the other."""

from __future__ import annotations

import argparse
from dataclasses import fields

from sprint.measure.protocol import ESTIMATORS, SPARSE_KERNELS, TIMINGS, Protocol
from sprint.methods import PruneConfig


def add_protocol_args(p: argparse.ArgumentParser, defaults: Protocol | None) -> None:
    """The latency protocol's settings (see sprint.measure.protocol.Protocol); None: default to the latency table's."""
    def default(key: str):
        return getattr(defaults, key) if defaults else None

    def shown(key: str) -> str:
        return f"default {default(key)}" if defaults else "default: as recorded in the latency table"

    p.add_argument("--timing", choices=TIMINGS, default=default("timing"),
                   help="'generate': one whole HF generate per model and round (the authors' protocol); 'step': the "
                        f"models' forwards alternate step by step, for noisy CPUs ({shown('timing')})")
    p.add_argument("--threads", type=int, default=default("threads"),
                   help=f"torch CPU threads while timing, 0 = unchanged ({shown('threads')})")
    p.add_argument("--warmup", type=int, default=default("warmup"), help=f"untimed generations per model ({shown('warmup')})")
    p.add_argument("--rounds", type=int, default=default("min_rounds"),
                   help=f"interleaved timing rounds taken at least, >= 6 ({shown('min_rounds')})")
    p.add_argument("--max-rounds", type=int, default=default("max_rounds"),
                   help=f"rounds taken at most while the 95%% CI is wider than --max-spread ({shown('max_rounds')})")
    p.add_argument("--max-spread", type=float, default=default("max_spread"),
                   help="noise bound: the CI half-width relative to the dense time; a measurement still wider after "
                        f"--attempts tries fails ({shown('max_spread')})")
    p.add_argument("--estimator", choices=tuple(ESTIMATORS), default=default("estimator"),
                   help="location estimate over rounds and its 95%% CI: hodges-lehmann (Wilcoxon CI; assumes "
                        f"symmetric noise, ~1.5x narrower) or median (order statistics) ({shown('estimator')})")
    p.add_argument("--attempts", type=int, default=default("attempts"),
                   help=f"fresh measurements tried before failing as too noisy ({shown('attempts')})")
    p.add_argument("--sparse-kernels", choices=SPARSE_KERNELS, default=default("sparse_kernels"),
                   help="how a 2:4-sparse model is timed: auto (semi-structured sparse kernels where they run: CUDA, "
                        f"compute capability 8.0+) or dense (as stored) ({shown('sparse_kernels')})")


_FIELD_TYPES = {"int": int, "float": float, "str": str}


def add_prune_config_args(p: argparse.ArgumentParser) -> None:
    """One flag per PruneConfig field (after --method / --target-speedup), with its default, help and choices."""
    for f in fields(PruneConfig):
        if f.name in ("method", "target_speedup"):
            continue
        kind = _FIELD_TYPES[str(f.type).split("|")[0].strip()]
        extra = {k: v for k, v in f.metadata.items() if k != "help"}
        shown = "" if f.default is None else f" (default {f.default})"
        p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default, help=f.metadata["help"] + shown,
                       **extra)


def prune_settings(args: argparse.Namespace) -> dict:
    """The prune flags as PruneConfig keyword arguments."""
    return {f.name: getattr(args, f.name) for f in fields(PruneConfig)}


def protocol_settings(args: argparse.Namespace) -> dict:
    """The protocol flags as Protocol field names (None where not given)."""
    return {"timing": args.timing, "threads": args.threads, "warmup": args.warmup, "min_rounds": args.rounds,
            "max_rounds": args.max_rounds, "max_spread": args.max_spread, "attempts": args.attempts,
            "estimator": args.estimator, "sparse_kernels": args.sparse_kernels}
