"""Evaluation: zero-shot accuracy (lm-eval as a library), WikiText-2 perplexity and measured latency.

Accuracy follows the paper: zero-shot ARC-Challenge, ARC-Easy, BoolQ, HellaSwag and PIQA scored by lm-eval's
log-likelihood ranking, ``acc_norm`` where the task has it, else ``acc``, and the plain mean of the tasks.
With a data mirror the tasks are built from its jsonl files as local lm-eval tasks whose prompts match the
built-in ones; without one the built-in tasks fetch their data from the hub.  Partial evaluation draws a
seeded random subset of each task (lm-eval's ``limit`` would take the first N documents).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sprint import data, stats
from sprint.errors import SprintError
from sprint.io import atomic_write_json
from sprint.methods import point_name
from sprint.provenance import provenance

log = logging.getLogger("sprint")

TASK_METRIC = {
    "arc_challenge": "acc_norm", "arc_easy": "acc_norm", "hellaswag": "acc_norm", "piqa": "acc_norm", "boolq": "acc",
}
LOCAL_PREFIX = "sprint_"  # local task names must not collide with lm-eval's built-in ones

_ARC = {"doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_choice": "choices"}
_PROMPTS: dict[str, dict[str, Any]] = {
    "arc_challenge": _ARC,
    "arc_easy": _ARC,
    "boolq": {"doc_to_text": "{{passage}}\nQuestion: {{question}}?\nAnswer:", "doc_to_choice": ["no", "yes"]},
    "piqa": {"doc_to_text": "Question: {{goal}}\nAnswer:", "doc_to_choice": "{{[sol1, sol2]}}"},
    "hellaswag": {"doc_to_text": "{{query}}", "doc_to_choice": "choices"},
}


def _hellaswag_clean(text: str) -> str:
    """HellaSwag's WikiHow artefacts: ``" [title]"`` becomes a sentence break, other ``[...]`` markup goes."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def _hellaswag_query(query: str) -> str:
    """Clean a mirror query ``"<activity>: <ctx_a> <ctx_b>"`` and capitalise its trailing fragment ``ctx_b``.

    The mirror joins ``ctx_a`` and ``ctx_b``; an unfinished last sentence (no closing ``.!?``) is ``ctx_b``,
    which lm-eval's built-in task capitalises.
    """
    head, _, ctx = query.partition(": ")
    if ctx and ctx.rstrip()[-1:] not in ".!?":
        match = re.search(r"^(.*[.!?]\s+)?(.+)$", ctx, flags=re.S)
        ctx = (match.group(1) or "") + match.group(2).capitalize()
    return _hellaswag_clean(f"{head}: {ctx}" if ctx else head)


def _hellaswag_docs(dataset: Any) -> Any:
    """``process_docs`` of the local HellaSwag task: the built-in task's query and ending preprocessing.

    Never from the ``datasets`` cache: its key does not see an edit of the helpers ``clean`` calls, so a cached map
    would silently evaluate with the old preprocessing.
    """
    def clean(doc: dict) -> dict:
        return {"query": _hellaswag_query(doc["query"]), "choices": [_hellaswag_clean(c) for c in doc["choices"]]}

    return dataset.map(clean, load_from_cache_file=False)


def local_task_config(task: str, mirror: Path) -> dict[str, Any]:
    """An lm-eval task config (dict form) reading ``benchmarks/<task>.jsonl`` from the mirror."""
    config = {
        "task": LOCAL_PREFIX + task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.benchmark_file(task, mirror))}},
        "output_type": "multiple_choice",
        "test_split": "test",
        "doc_to_target": "label",
        "num_fewshot": 0,
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")],
        "metadata": {"version": 1.0},
        **_PROMPTS[task],
    }
    if task == "hellaswag":
        config["process_docs"] = _hellaswag_docs
    return config


def check_tasks(tasks: list[str]) -> None:
    """Raise SprintError unless ``tasks`` is a non-empty list of distinct supported task names."""
    if not tasks:
        raise SprintError(f"tasks: empty list; choose from {', '.join(TASK_METRIC)}")
    unknown = [t for t in tasks if t not in TASK_METRIC]
    if unknown:
        raise SprintError(f"tasks: unknown task {unknown[0]!r}; choose from {', '.join(TASK_METRIC)}")
    if len(set(tasks)) != len(tasks):
        raise SprintError(f"tasks: {','.join(tasks)} names a task twice")


def seeded_subset(n: int, limit: int | None, seed: int) -> list[int] | None:
    """Sorted indices of a seeded random subset of ``limit`` of ``n`` documents (None = all of them)."""
    if limit is None or limit >= n:
        return None
    return sorted(random.Random(seed).sample(range(n), limit))


def zero_shot_accuracy(
    model: Any, tokenizer: Any, tasks: list[str], limit: int | None, seed: int, mirror: Path | None, batch_size: int,
) -> dict[str, dict]:
    """Zero-shot accuracy per task: ``{task: {"metric", "value", "stderr", "n", "total", "doc_ids", "correct"}}``.

    ``mirror`` given: local tasks from its jsonl files (no hub access); None: lm-eval's built-in tasks.
    ``limit``: a random subset of that many documents per task, drawn with ``seed`` (None = whole task).
    ``stderr`` is lm-eval's standard error of the mean, sqrt(p (1 − p) / (n − 1)) for 0/1 scores.
    ``doc_ids`` (lm-eval's index into the task's documents, ascending) and ``correct`` (0/1 per document, the task's
    metric) are what paired comparisons of models evaluated on the same documents need.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    check_tasks(tasks)
    if limit is not None and limit < 1:
        raise SprintError(f"limit: must be a positive number of documents, got {limit}")
    manager = TaskManager(include_defaults=mirror is None)
    specs = [local_task_config(t, mirror) for t in tasks] if mirror is not None else list(tasks)
    names = {(LOCAL_PREFIX + t if mirror is not None else t): t for t in tasks}
    loaded = manager.load(specs)["tasks"]
    totals = {name: len(obj.eval_docs) for name, obj in loaded.items()}
    samples = {name: idx for name in loaded if (idx := seeded_subset(totals[name], limit, seed)) is not None}
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    results = lm_eval.simple_evaluate(
        model=lm, tasks=list(loaded.values()), task_manager=manager, samples=samples or None, log_samples=True,
        random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
    )
    out = {}
    for name, task in names.items():
        metric, row = TASK_METRIC[task], results["results"][name]
        stderr = row.get(f"{metric}_stderr,none")
        docs = sorted((d["doc_id"], int(d[metric])) for d in results["samples"][name] if d["filter"] == "none")
        out[task] = {
            "metric": metric,
            "value": float(row[f"{metric},none"]),
            "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
            "n": int(results["n-samples"][name]["effective"]),
            "total": totals[name],
            "doc_ids": [doc_id for doc_id, _ in docs],
            "correct": [correct for _, correct in docs],
        }
        log.info("%s: %s = %.4f (n = %d of %d)", task, metric, out[task]["value"], out[task]["n"], totals[name])
    return out


def mean_stderr(stderrs: list[float | None]) -> float | None:
    """Standard error of the mean of T task accuracies: sqrt(Σ stderr_t²) / T (None if any task lacks one).

    The tasks are independent samples of documents, so the variances of their accuracies add.
    """
    if any(s is None for s in stderrs):
        return None
    return math.sqrt(sum(s * s for s in stderrs)) / len(stderrs)


def _perplexity(
    model: Any, tokenizer: Any, mirror: Path | None, seq_len: int, max_windows: int | None, batch_size: int,
) -> dict[str, Any]:
    """WikiText-2 test perplexity with its 95% CI, the tokens it scored and each window's mean token NLL.

    ``{"wikitext2_ppl", "wikitext2_ppl_ci": [lo, hi], "wikitext2_tokens", "wikitext2_window_nll": [...]}``.
    Every window scores ``seq_len − 1`` tokens, so the perplexity is exp(mean of the window NLLs); the CI is a
    seeded bootstrap over windows.  The windows depend only on the tokenizer and ``seq_len``: every model of a
    family scores the same ones, so the window lists of two models pair up (:mod:`sprint.stats`).
    """
    if seq_len < 2 or batch_size < 1 or (max_windows is not None and max_windows < 1):
        raise SprintError(f"perplexity: need seq_len >= 2, batch_size >= 1, max_windows >= 1 or None "
                          f"(got {seq_len}, {batch_size}, {max_windows})")
    ids = tokenizer(data.wikitext2_text("test", mirror), return_tensors="pt", add_special_tokens=False,
                    verbose=False).input_ids[0]
    n = ids.numel() // seq_len if max_windows is None else min(ids.numel() // seq_len, max_windows)
    if n == 0:
        raise SprintError(f"perplexity: WikiText-2 test has {ids.numel()} tokens, fewer than ppl_seq_len = {seq_len}")
    windows = ids[: n * seq_len].view(n, seq_len)
    device = next(model.parameters()).device
    nll = []  # mean token NLL per window
    with torch.inference_mode():
        for start in tqdm(range(0, n, batch_size), desc="wikitext2 ppl", unit="batch", leave=False):
            batch = windows[start : start + batch_size].to(device)
            logits = model(input_ids=batch, use_cache=False).logits
            for row_logits, row_ids in zip(logits, batch):  # one window at a time: fp32 logits of one row only
                nll.append(torch.nn.functional.cross_entropy(row_logits[:-1].float(), row_ids[1:]).item())
    sample = {"wikitext2": (range(n), nll)}
    return {"wikitext2_ppl": math.exp(sum(nll) / n),
            "wikitext2_ppl_ci": list(stats.bootstrap_ci(sample, stats.perplexity)),
            "wikitext2_tokens": n * (seq_len - 1), "wikitext2_window_nll": nll}


def wikitext2_perplexity(
    model: Any, tokenizer: Any, mirror: Path | None, seq_len: int, max_windows: int | None, batch_size: int,
) -> float:
    """exp(mean token NLL) over non-overlapping ``seq_len`` windows of the WikiText-2 test split.

    The split is tokenized once; the first ``max_windows`` windows are used (None = all), the tail is dropped.
    """
    return _perplexity(model, tokenizer, mirror, seq_len, max_windows, batch_size)["wikitext2_ppl"]


def evaluate_model(
    model: Any, tokenizer: Any, *, tasks: list[str], limit: int | None, seed: int, mirror: Path | None,
    ppl_seq_len: int, ppl_max_windows: int | None, batch_size: int,
) -> dict[str, Any]:
    """Accuracy and perplexity, with all parameters (the measured speedup is :func:`measured_speedup`'s)."""
    import lm_eval

    model.eval()
    accuracy = zero_shot_accuracy(model, tokenizer, tasks, limit, seed, mirror, batch_size)
    ppl = _perplexity(model, tokenizer, mirror, ppl_seq_len, ppl_max_windows, batch_size)
    windows = len(ppl["wikitext2_window_nll"])
    log.info("wikitext2 perplexity %.3f, 95%% CI [%.3f, %.3f], over %d windows of %d tokens", ppl["wikitext2_ppl"],
             *ppl["wikitext2_ppl_ci"], windows, ppl_seq_len)
    metrics: dict[str, Any] = {
        "tasks": accuracy,
        "mean_accuracy": sum(r["value"] for r in accuracy.values()) / len(accuracy),
        "mean_accuracy_stderr": mean_stderr([r["stderr"] for r in accuracy.values()]),
        **ppl,
    }
    params: dict[str, Any] = {
        "tasks": list(tasks), "limit": limit, "seed": seed, "num_fewshot": 0, "batch_size": batch_size,
        "data_source": f"mirror:{mirror}" if mirror is not None else "hub",
        "lm_eval_version": lm_eval.__version__,
        "task_sizes": {t: {"evaluated": r["n"], "total": r["total"]} for t, r in accuracy.items()},
        "ppl_split": "test", "ppl_seq_len": ppl_seq_len, "ppl_max_windows": ppl_max_windows, "ppl_windows": windows,
    }
    metrics["eval_params"] = params
    return metrics


def pruning_summary(model: str) -> dict[str, Any]:
    """Method, target, point (:func:`sprint.methods.point_name`) and estimated speedup, pruning seed and source
    model from ``<model>/pruning.json`` (dense if absent)."""
    path = Path(model) / "pruning.json"
    if not path.is_file():
        return {"method": "dense", "target_speedup": 1.0, "point": point_name(1.0), "estimated_speedup": 1.0,
                "prune_seed": None, "source_model": str(model)}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        point = record.get("point") or point_name(record["target_speedup"])  # records before points: sublayer ones
        return {"method": record["method"], "target_speedup": record["target_speedup"], "point": point,
                "estimated_speedup": record["estimated_speedup"], "prune_seed": record.get("params", {}).get("seed"),
                "source_model": record["model"]}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise SprintError(f"{path}: not a SPRINT pruning record ({type(err).__name__}: {err})") from None


def latency_protocol(latency: str | os.PathLike, overrides: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """(table, protocol): the latency table at ``latency`` and the protocol that measures speedups against it, at
    the table's prompt / generation lengths; ``overrides`` replace the table's recorded protocol settings (warmup,
    min_rounds, max_rounds, max_spread, attempts, ...)."""
    from sprint.latency import Protocol, load_latency

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
    """The metrics fields of one measured speedup (``result`` from :func:`sprint.latency.measure_speedups`)."""
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
    its 95% CI; see :class:`sprint.latency.Protocol`), at the latency table's prompt and generation lengths.

    The dense model's own evaluation times it against a second copy of itself: its speedup is 1 up to noise, a
    check of the protocol on every run.  Both models are held at once (twice the model's memory).  A 2:4-sparse
    ``model`` is first switched to sparse kernels where ``protocol.sparse_kernels`` and the hardware allow
    (:func:`sprint.sparse_kernels.use_sparse_kernels`, in place: call this after the accuracy run); the record's
    ``speedup.kernels`` says which kernels ran.
    """
    from sprint.latency import measure_speedup
    from sprint.models import load_model
    from sprint.sparse_kernels import use_sparse_kernels

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
    code included) are timed in the same interleaved rounds (:func:`sprint.latency.measure_speedups`): the dense
    model is timed once per round for all of them, every ratio is taken under the same conditions, and the copy's
    ratio (1 up to noise) checks the protocol.  Every model is held in memory at once; for models too large for
    that, time each checkpoint apart (``sprint evaluate --latency``).

    ``output`` holds ``{"models": {"dense" | checkpoint: {pruning summary, measured_speedup,
    measured_speedup_ci, latency_s, dense_latency_s, speedup}}, "provenance": ...}``.
    """
    from sprint.latency import measure_speedups
    from sprint.models import load_config, load_model
    from sprint.sparse_kernels import use_sparse_kernels

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


def evaluate_to_file(
    model: str, output: str | os.PathLike, tasks: list[str], limit: int | None, seed: int, mirror: str | None,
    ppl_seq_len: int, ppl_max_windows: int | None, batch_size: int, latency: str | None, device: str, dtype: str,
    dense_model: str | None = None, protocol: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a model folder / hub id and write the metrics JSON atomically to ``output``.

    With a ``latency`` table, also the measured speedup over ``dense_model`` (default: the model the checkpoint
    was pruned from, per its pruning.json; the model itself when it is dense) at the table's prompt / generation
    lengths; ``protocol`` overrides the table's recorded protocol settings (warmup, min_rounds, max_rounds,
    max_spread, attempts).  Inputs (tasks, mirror, latency table, pruning record, dense model) are checked before
    any model is loaded.
    """
    check_tasks(tasks)
    mirror_path = data.resolve_mirror(mirror)
    if mirror_path is None and data.hub_offline():
        raise SprintError(f"no data mirror and the hub is offline: set ${data.MIRROR_ENV} or --mirror")
    if mirror_path is not None:
        for task in tasks:
            data.benchmark_file(task, mirror_path)
    record = pruning_summary(model)
    from sprint.models import load_config, load_model

    table = speed = None
    if latency is not None:
        table, speed = latency_protocol(latency, protocol)
        dense_model = dense_model or record["source_model"]
        load_config(dense_model)  # a missing dense model fails now, not after the accuracy run

    lm, tokenizer = load_model(model, device=device, dtype=dtype, carried_code=True)
    metrics = {"model": str(model), **record}
    metrics.update(evaluate_model(
        lm, tokenizer, tasks=tasks, limit=limit, seed=seed, mirror=mirror_path, ppl_seq_len=ppl_seq_len,
        ppl_max_windows=ppl_max_windows, batch_size=batch_size,
    ))
    metrics["eval_params"].update({"device": device, "dtype": dtype, "model_dtype": str(next(lm.parameters()).dtype)})
    metrics["provenance"] = provenance()
    if speed is not None:
        metrics.update(measured_speedup(lm, dense_model, table, speed, device, dtype))
    atomic_write_json(output, metrics)
    log.info("metrics -> %s: mean accuracy %.4f, ppl %.3f", output, metrics["mean_accuracy"], metrics["wikitext2_ppl"])
    return metrics
