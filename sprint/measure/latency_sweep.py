"""The paper's Fig. 3a as a measurement: generation latency against the number of removed attention (MHA)
sublayers and, separately, of removed MLP sublayers, from none up to nearly all, beside the latency table's linear
prediction for the same counts, the check of the linear model that the stopping rule and SPRINT's η = ζ / t rely
on (:meth:`sprint.measure.table.LatencyTable.estimate`).

Counts: for each share f of ``fractions`` (default 0.25, 0.5, 0.75, 1), n = round(f L) sublayers of one kind,
clipped to [1, L − 1] (L decoder layers: "nearly all" is L − 1), removed from the top down as the profile removes
them (layers L − 2, L − 3, ..., so the last layer is always kept).  The dense model and every (kind, n) model
are timed in the same interleaved rounds (:func:`sprint.measure.timing.interleaved_rounds`, the latency protocol);
each point's quantity is the per-round ratio of its time to the dense time, estimated with its 95% CI by the
protocol's estimator, and guarded by ``protocol.max_spread`` like every other timing.  ``latency_s`` is that ratio
times the dense time's estimate.

Two linear predictions are drawn beside the points:

- ``profile``: the line the latency profile would measure from these same rounds: t_kind from the point at the
  profile's share (``fraction``, latency.fraction: n = round(f L) as :func:`sprint.measure.profile.profile_latency`
  takes it), predicted ratio(n) = 1 − n t_kind / dense;
- ``table`` (when a latency table is given, e.g. the one pruning used): its dense_s − n t_kind, and as a share of
  its dense_s (the table was timed at another moment: compare the ratios, the machine's speed cancels in them).

``linearity`` summarises per kind the largest gap between a measured ratio and each prediction, whether each
prediction lies inside the point's 95% CI, and the least-squares slope through (0, 1) of the measured ratios.

Written as one JSON (:func:`sweep_to_file`): ``{"model", "device", "num_layers", "prompt_len", "gen_len",
"protocol", "rounds", "attempts", "torch_threads", "dtype", "dense_s": {"value", "ci95"}, "points": [{"kind",
"removed", "layers", "ratio": {"value", "ci95", "spread"}, "latency_s": {"value", "ci95"}, "predicted": {"profile":
{"ratio", "latency_s"}, "table": {...}}}], "predictions": {"profile": {...}, "table": {...}}, "linearity": {...},
"times_s": {subject: [seconds per round]}, "provenance"}``.
"""

from __future__ import annotations

import logging
import os
import statistics
from typing import Any

import torch

from sprint.errors import SprintError
from sprint.io import atomic_write_json
from sprint.measure.protocol import Protocol, estimate
from sprint.measure.speedup import with_removed
from sprint.measure.table import LatencyTable
from sprint.measure.timing import device_name, interleaved_rounds
from sprint.model.modeling_sprint import decoder_layers, removed_sublayers, set_removed
from sprint.provenance import provenance

log = logging.getLogger("sprint")

KINDS = ("attn", "mlp")
DEFAULT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def sweep_counts(num_layers: int, fractions: list[float] | tuple[float, ...]) -> list[int]:
    """The distinct removal counts n = round(f L), clipped to [1, L − 1], ascending."""
    if num_layers < 2:
        raise SprintError(f"latency sweep needs at least 2 decoder layers, the model has {num_layers}")
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise SprintError(f"latency sweep: fractions must be in (0, 1], got {list(fractions)}")
    return sorted({min(max(1, round(f * num_layers)), num_layers - 1) for f in fractions})


def removed_set(num_layers: int, kind: str, n: int) -> list[tuple[int, str]]:
    """n sublayers of ``kind`` from the top down, as the profile removes them: layers L − 2, L − 3, ..."""
    return [(i, kind) for i in range(num_layers - 2, num_layers - 2 - n, -1)]


def _fit_through_one(points: list[tuple[int, float]]) -> float:
    """Least-squares slope s of ratio = 1 − s n over (n, ratio) points."""
    den = sum(n * n for n, _ in points)
    return sum(n * (1 - r) for n, r in points) / den if den else 0.0


def sweep_latency(model, model_name: str, protocol: Protocol, fractions: list[float] | tuple[float, ...] =
                  DEFAULT_FRACTIONS, fraction: float = 0.25, table: LatencyTable | None = None) -> dict[str, Any]:
    """Measure Fig. 3a (see the module docstring): the dense model and n removed sublayers of each kind for every
    count of :func:`sweep_counts` (plus the profile's count), in the same interleaved rounds.  ``model`` is left as
    it came (its removed sublayers restored); it must be dense.  Raises NoisyLatencyError like every timing."""
    base = removed_sublayers(model)
    if base:
        raise SprintError(f"model {model_name} already has sublayers {base} removed: sweep the dense model")
    num_layers = len(decoder_layers(model))
    if not 0 < fraction < 1:
        raise SprintError(f"latency sweep: the profile's fraction must be in (0, 1), got {fraction}")
    profile_n = min(max(1, round(fraction * num_layers)), num_layers - 1)  # as profile_latency takes it
    counts = sorted(set(sweep_counts(num_layers, fractions)) | {profile_n})
    configs = {"dense": []} | {f"{kind}:{n}": removed_set(num_layers, kind, n) for kind in KINDS for n in counts}
    names = [k for k in configs if k != "dense"]

    def summarize(s: dict[str, list[float]]) -> dict:
        return {name: estimate([x / d for d, x in zip(s["dense"], s[name])], 1.0, protocol.estimator)
                for name in names}

    try:
        samples, ratios, attempt = interleaved_rounds(
            {name: with_removed(model, removed) for name, removed in configs.items()}, protocol, summarize,
            desc=f"latency sweep ({len(configs)} models)")
    finally:
        set_removed(model, base)
    dense = estimate(samples["dense"], statistics.median(samples["dense"]), protocol.estimator)
    t1 = dense["value"]
    share = {kind: (1 - ratios[f"{kind}:{profile_n}"]["value"]) / profile_n for kind in KINDS}
    predictions: dict[str, Any] = {"profile": {
        "what": f"the line the latency profile measures (fraction {fraction}: {profile_n} sublayers), from these "
                "rounds", "n": profile_n, "dense_s": t1, "t_attn_s": t1 * share["attn"], "t_mlp_s": t1 * share["mlp"]}}
    if table is not None:
        predictions["table"] = {"what": "the given latency table", "dense_s": table.dense_s,
                                "t_attn_s": table.t_attn_s, "t_mlp_s": table.t_mlp_s,
                                "prompt_len": table.prompt_len, "gen_len": table.gen_len, "device": table.device,
                                "given": table.extra.get("given")}
        if (table.prompt_len, table.gen_len) != (protocol.prompt_len, protocol.gen_len):
            log.warning("latency table measured at %d+%d tokens, the sweep at %d+%d: its prediction is of another "
                        "setting", table.prompt_len, table.gen_len, protocol.prompt_len, protocol.gen_len)
    points = [{"kind": "none", "removed": 0, "layers": [], "ratio": {"value": 1.0, "ci95": [1.0, 1.0], "spread": 0.0},
               "latency_s": {"value": t1, "ci95": dense["ci95"]},
               "predicted": {p: {"ratio": 1.0, "latency_s": v["dense_s"]} for p, v in predictions.items()}}]
    for kind in KINDS:
        for n in counts:
            q = ratios[f"{kind}:{n}"]
            predicted = {}
            for p, v in predictions.items():
                ratio = 1 - n * v[f"t_{kind}_s"] / v["dense_s"]
                predicted[p] = {"ratio": ratio, "latency_s": v["dense_s"] - n * v[f"t_{kind}_s"],
                                "latency_s_at_sweep_dense": t1 * ratio}
            points.append({"kind": kind, "removed": n, "layers": [i for i, _ in configs[f"{kind}:{n}"]],
                           "ratio": q, "latency_s": {"value": t1 * q["value"], "ci95": [t1 * c for c in q["ci95"]]},
                           "predicted": predicted})
    linearity = {}
    for kind in KINDS:
        mine = [p for p in points if p["kind"] == kind]
        row: dict[str, Any] = {
            "fitted_share_per_sublayer": _fit_through_one([(p["removed"], p["ratio"]["value"]) for p in mine]),
            "measured_share_at_most_removed": 1 - mine[-1]["ratio"]["value"], "most_removed": mine[-1]["removed"]}
        for p in predictions:
            gaps = [p_["ratio"]["value"] - p_["predicted"][p]["ratio"] for p_ in mine]
            row[p] = {"share_per_sublayer": predictions[p][f"t_{kind}_s"] / predictions[p]["dense_s"],
                      "max_abs_gap": max(abs(g) for g in gaps), "gaps": gaps,
                      "inside_ci": [p_["ratio"]["ci95"][0] <= p_["predicted"][p]["ratio"] <= p_["ratio"]["ci95"][1]
                                    for p_ in mine]}
        linearity[kind] = row
        log.info("%s: measured latency share at n = %s: %s (profile line: %s)", kind,
                 [p["removed"] for p in mine], [round(p["ratio"]["value"], 4) for p in mine],
                 [round(p["predicted"]["profile"]["ratio"], 4) for p in mine])
    return {"model": model_name, "device": device_name(next(model.parameters()).device), "num_layers": num_layers,
            "prompt_len": protocol.prompt_len, "gen_len": protocol.gen_len, "fractions": list(fractions),
            "fraction": fraction, "counts": counts, "protocol": protocol.to_dict(), "rounds": len(samples["dense"]),
            "attempts": attempt, "torch_threads": protocol.threads or torch.get_num_threads(),
            "dtype": str(model.dtype), "dense_s": {"value": t1, "ci95": dense["ci95"]}, "points": points,
            "predictions": predictions, "linearity": linearity, "times_s": samples, "provenance": provenance()}


def sweep_to_file(model_path: str, output: str | os.PathLike, protocol: Protocol, device: str, dtype: str,
                  fractions: list[float] | tuple[float, ...] = DEFAULT_FRACTIONS, fraction: float = 0.25,
                  latency: str | os.PathLike | None = None) -> dict[str, Any]:
    """Load the dense model, :func:`sweep_latency` it and write the JSON atomically to ``output``.  ``latency``: a
    latency table whose linear prediction is recorded beside the profile's (checked before the model is loaded)."""
    from sprint.measure.table import given_table
    from sprint.model.loading import load_config, load_model

    protocol.validate()
    num_layers = load_config(model_path).num_hidden_layers
    sweep_counts(num_layers, fractions)
    table = given_table(latency, num_layers) if latency is not None else None
    model, _ = load_model(model_path, device=device, dtype=dtype)
    model.eval()
    document = sweep_latency(model, str(model_path), protocol, fractions, fraction, table)
    atomic_write_json(output, document)
    log.info("latency sweep (%d models, %d rounds) -> %s", 1 + 2 * len(document["counts"]), document["rounds"], output)
    return document
