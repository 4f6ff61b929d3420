"""The latency profile: the table of per-sublayer time savings, measured as the authors do.

Time the dense model (T1), the model with a fraction of its MLP sublayers removed (T2) and with the same
fraction of its attention sublayers removed (T3), interleaved under the :class:`~sprint.measure.protocol.Protocol`;
t_mlp = (T1 - T2) / n and t_attn = (T1 - T3) / n.
"""

from __future__ import annotations

import logging
import statistics

import torch

from sprint.errors import SprintError
from sprint.measure.protocol import NoisyLatencyError, Protocol, estimate
from sprint.measure.speedup import with_removed
from sprint.measure.table import LatencyTable
from sprint.measure.timing import device_name, interleaved_rounds
from sprint.model.modeling_sprint import decoder_layers, removed_sublayers, set_removed
from sprint.provenance import provenance

log = logging.getLogger("sprint")


def profile_latency(model, model_name: str, protocol: Protocol, fraction: float = 0.25) -> LatencyTable:
    """Measure the latency table: dense (T1), n MLPs removed (T2), n attentions removed (T3), layers L-2, L-3, ...

    The three are timed by the protocol (:class:`Protocol`).  What the stopping rule needs is each sublayer's
    saving *as a share of the dense time* (the estimated speedup depends on nothing else), and that is what the
    rounds measure well: per round, (1 - T2/T1) / n and (1 - T3/T1) / n, whose estimates (with 95% CIs) times the
    dense time's give t_mlp and t_attn.  The noise guard bounds their spreads, n times the CI half-width of
    the per-sublayer share, i.e. the uncertainty of the measured saving as a share of the dense time.  dense_s
    itself moves with the machine's speed from round to round (±15% within minutes on a shared 2-core VM, which
    scales T1, T2 and T3 alike and cancels in the shares); its CI is recorded, not guarded.  A saving whose CI
    reaches 0 or below means the machine was too noisy and is an error.
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

    def summarize(s: dict[str, list[float]]) -> dict:
        """Per-sublayer savings as shares of the dense time (guarded), keyed by the table entry they scale to."""
        return {f"t_{kind}_s": estimate([(1 - x / d) / n for d, x in zip(s["dense"], s[kind])], 1 / n,
                                         protocol.estimator)
                for kind in ("attn", "mlp")}

    try:
        samples, shares, attempt = interleaved_rounds(
            {name: with_removed(model, base + removed) for name, removed in configs.items()}, protocol, summarize,
            desc="latency profile")
    finally:
        set_removed(model, base)
    dense = estimate(samples["dense"], statistics.median(samples["dense"]), protocol.estimator)
    t1 = dense["value"]
    summary = {"dense_s": dense, **{k: {"value": t1 * q["value"], "ci95": [t1 * q["ci95"][0], t1 * q["ci95"][1]],
                                        "spread": q["spread"]} for k, q in shares.items()}}
    t_attn, t_mlp = summary["t_attn_s"]["value"], summary["t_mlp_s"]["value"]
    log.info("latency: dense %.4f s, t_attn %.5f s, t_mlp %.5f s (spreads %s)", t1, t_attn, t_mlp,
             ", ".join(f"{k} ±{100 * q['spread']:.1f}%" for k, q in summary.items()))
    low = [k for k in ("t_attn_s", "t_mlp_s") if summary[k]["ci95"][0] <= 0]
    if low:
        raise NoisyLatencyError(
            f"latency profile: removing {n} sublayers did not measurably reduce the time ({', '.join(low)} has a 95% "
            f"CI reaching {min(summary[k]['ci95'][0] for k in low):.5f} s; dense {t1:.4f} s): run on an idle machine "
            f"or use a larger --gen-len; nothing was written"
        )
    extra = {"num_layers": num_layers, "n_removed": n, "fraction": fraction, "protocol": protocol.to_dict(),
             "rounds": len(samples["dense"]), "attempts": attempt,
             "ci95": {k: q["ci95"] for k, q in summary.items()}, "spread": {k: q["spread"] for k, q in summary.items()},
             "guarded": sorted(shares), "max_spread": protocol.max_spread, "times_s": samples, "dtype": str(model.dtype),
             "torch_threads": protocol.threads or torch.get_num_threads(), "provenance": provenance()}
    return LatencyTable(device=device_name(next(model.parameters()).device), model=model_name,
                        prompt_len=protocol.prompt_len, gen_len=protocol.gen_len, dense_s=t1, t_attn_s=t_attn,
                        t_mlp_s=t_mlp, extra=extra)

