"""Evaluation of one model into one metrics file: zero-shot accuracy (:mod:`sprint.measure.accuracy`: per task the
metric, the per-document answers and the chance-aware fields), WikiText-2 perplexity and that of the held-out
corpora asked for (``heldout``, e.g. ``hellaswag_gold``: the same windowing and fields ``<corpus>_ppl``,
``<corpus>_ppl_ci``, ``<corpus>_tokens``, ``<corpus>_window_nll``; :mod:`sprint.measure.perplexity`) and, unless
timed elsewhere, its measured speedup (:mod:`sprint.measure.speedup`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sprint.data import sources
from sprint.errors import SprintError
from sprint.io import atomic_write_json
from sprint.measure.accuracy import mean_stderr, resolve_tasks, zero_shot_accuracy
from sprint.measure.perplexity import perplexity_record
from sprint.measure.speedup import latency_protocol, measured_speedup
from sprint.model.checkpoint import pruning_summary
from sprint.provenance import provenance

log = logging.getLogger("sprint")


def evaluate_model(
    model: Any, tokenizer: Any, *, tasks: list[str], limit: int | None, seed: int, mirror: Path | None,
    ppl_seq_len: int, ppl_max_windows: int | None, batch_size: int, heldout: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Accuracy and perplexity (WikiText-2, then each ``heldout`` corpus over as many windows as WikiText-2 scored:
    ``ppl_max_windows``, or with None the whole WikiText-2 test split's count, so that a held-out corpus never costs
    more than WikiText-2), with all parameters (the measured speedup is :func:`measured_speedup`'s)."""
    import lm_eval

    model.eval()
    accuracy = zero_shot_accuracy(model, tokenizer, tasks, limit, seed, mirror, batch_size)
    ppl = perplexity_record(model, tokenizer, mirror, ppl_seq_len, ppl_max_windows, batch_size)
    windows = len(ppl["wikitext2_window_nll"])
    log.info("wikitext2 perplexity %.3f, 95%% CI [%.3f, %.3f], over %d windows of %d tokens", ppl["wikitext2_ppl"],
             *ppl["wikitext2_ppl_ci"], windows, ppl_seq_len)
    extra: dict[str, Any] = {}
    for corpus in heldout:
        extra.update(perplexity_record(model, tokenizer, mirror, ppl_seq_len, windows, batch_size, corpus))
        log.info("%s perplexity %.3f, 95%% CI [%.3f, %.3f], over %d windows (held out: never calibrated on)", corpus,
                 extra[f"{corpus}_ppl"], *extra[f"{corpus}_ppl_ci"], len(extra[f"{corpus}_window_nll"]))
    metrics: dict[str, Any] = {
        "tasks": accuracy,
        "mean_accuracy": sum(r["value"] for r in accuracy.values()) / len(accuracy),
        "mean_accuracy_stderr": mean_stderr([r["stderr"] for r in accuracy.values()]),
        **ppl,
        **extra,
    }
    params: dict[str, Any] = {
        "tasks": list(tasks), "limit": limit, "seed": seed, "num_fewshot": 0, "batch_size": batch_size,
        "data_source": f"mirror:{mirror}" if mirror is not None else "hub",
        "lm_eval_version": lm_eval.__version__,
        "task_sizes": {t: {"evaluated": r["n"], "total": r["total"]} for t, r in accuracy.items()},
        "task_sources": {t: r["source"] for t, r in accuracy.items()},
        "ppl_split": "test", "ppl_seq_len": ppl_seq_len, "ppl_max_windows": ppl_max_windows, "ppl_windows": windows,
        "heldout_ppl": list(heldout), "heldout_seed": sources.HELDOUT_SEED,
        "heldout_windows": {c: len(extra[f"{c}_window_nll"]) for c in heldout},
    }
    metrics["eval_params"] = params
    return metrics



def evaluate_to_file(
    model: str, output: str | os.PathLike, tasks: list[str], limit: int | None, seed: int, mirror: str | None,
    ppl_seq_len: int, ppl_max_windows: int | None, batch_size: int, latency: str | None, device: str, dtype: str,
    dense_model: str | None = None, protocol: dict[str, Any] | None = None, heldout: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Evaluate a model folder / hub id and write the metrics JSON atomically to ``output``.

    With a ``latency`` table, also the measured speedup over ``dense_model`` (default: the model the checkpoint
    was pruned from, per its pruning.json; the model itself when it is dense) at the table's prompt / generation
    lengths; ``protocol`` overrides the table's recorded protocol settings (warmup, min_rounds, max_rounds,
    max_spread, attempts).  ``heldout``: held-out perplexity corpora scored besides WikiText-2.  Inputs (tasks,
    corpora, mirror, latency table, pruning record, dense model) are checked before any model is loaded.
    """
    mirror_path = sources.resolve_mirror(mirror)
    if mirror_path is None and sources.hub_offline():
        raise SprintError(f"no data mirror and the hub is offline: set ${sources.MIRROR_ENV} or --mirror")
    resolve_tasks(tasks, mirror_path)
    sources.check_heldout(heldout, mirror_path)
    record = pruning_summary(model)
    from sprint.model.loading import load_config, load_model

    table = speed = None
    if latency is not None:
        table, speed = latency_protocol(latency, protocol)
        dense_model = dense_model or record["source_model"]
        load_config(dense_model)  # a missing dense model fails now, not after the accuracy run

    lm, tokenizer = load_model(model, device=device, dtype=dtype, carried_code=True)
    metrics = {"model": str(model), **record}
    metrics.update(evaluate_model(
        lm, tokenizer, tasks=tasks, limit=limit, seed=seed, mirror=mirror_path, ppl_seq_len=ppl_seq_len,
        ppl_max_windows=ppl_max_windows, batch_size=batch_size, heldout=heldout,
    ))
    metrics["eval_params"].update({"device": device, "dtype": dtype, "model_dtype": str(next(lm.parameters()).dtype)})
    metrics["provenance"] = provenance()
    if speed is not None:
        metrics.update(measured_speedup(lm, dense_model, table, speed, device, dtype))
    atomic_write_json(output, metrics)
    log.info("metrics -> %s: mean accuracy %.4f, ppl %.3f", output, metrics["mean_accuracy"], metrics["wikitext2_ppl"])
    return metrics

