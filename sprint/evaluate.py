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

from sprint import data
from sprint.errors import SprintError
from sprint.io import atomic_write_json

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
    """``process_docs`` of the local HellaSwag task: the built-in task's query and ending preprocessing."""
    def clean(doc: dict) -> dict:
        return {"query": _hellaswag_query(doc["query"]), "choices": [_hellaswag_clean(c) for c in doc["choices"]]}

    return dataset.map(clean)


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
    """Zero-shot accuracy per task: ``{task: {"metric", "value", "stderr", "n", "total"}}``.

    ``mirror`` given: local tasks from its jsonl files (no hub access); None: lm-eval's built-in tasks.
    ``limit``: a random subset of that many documents per task, drawn with ``seed`` (None = whole task).
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
        model=lm, tasks=list(loaded.values()), task_manager=manager, samples=samples or None, log_samples=False,
        random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
    )
    out = {}
    for name, task in names.items():
        metric, row = TASK_METRIC[task], results["results"][name]
        stderr = row.get(f"{metric}_stderr,none")
        out[task] = {
            "metric": metric,
            "value": float(row[f"{metric},none"]),
            "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
            "n": int(results["n-samples"][name]["effective"]),
            "total": totals[name],
        }
        log.info("%s: %s = %.4f (n = %d of %d)", task, metric, out[task]["value"], out[task]["n"], totals[name])
    return out


def _perplexity(
    model: Any, tokenizer: Any, mirror: Path | None, seq_len: int, max_windows: int | None, batch_size: int,
) -> tuple[float, int]:
    """WikiText-2 test perplexity and the number of windows it was computed on."""
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
    nll, count = 0.0, 0
    with torch.inference_mode():
        for start in tqdm(range(0, n, batch_size), desc="wikitext2 ppl", unit="batch", leave=False):
            batch = windows[start : start + batch_size].to(device)
            logits = model(input_ids=batch, use_cache=False).logits
            for row_logits, row_ids in zip(logits, batch):  # one window at a time: fp32 logits of one row only
                nll += torch.nn.functional.cross_entropy(row_logits[:-1].float(), row_ids[1:], reduction="sum").item()
            count += batch[:, 1:].numel()
    return math.exp(nll / count), n


def wikitext2_perplexity(
    model: Any, tokenizer: Any, mirror: Path | None, seq_len: int, max_windows: int | None, batch_size: int,
) -> float:
    """exp(mean token NLL) over non-overlapping ``seq_len`` windows of the WikiText-2 test split.

    The split is tokenized once; the first ``max_windows`` windows are used (None = all), the tail is dropped.
    """
    return _perplexity(model, tokenizer, mirror, seq_len, max_windows, batch_size)[0]


def evaluate_model(
    model: Any, tokenizer: Any, *, tasks: list[str], limit: int | None, seed: int, mirror: Path | None,
    ppl_seq_len: int, ppl_max_windows: int | None, batch_size: int, latency: Any | None,
) -> dict[str, Any]:
    """Accuracy, perplexity and (given a dense latency table) measured latency and speedup, with all parameters."""
    import lm_eval

    model.eval()
    accuracy = zero_shot_accuracy(model, tokenizer, tasks, limit, seed, mirror, batch_size)
    ppl, windows = _perplexity(model, tokenizer, mirror, ppl_seq_len, ppl_max_windows, batch_size)
    log.info("wikitext2 perplexity %.3f over %d windows of %d tokens", ppl, windows, ppl_seq_len)
    metrics: dict[str, Any] = {
        "tasks": accuracy,
        "mean_accuracy": sum(r["value"] for r in accuracy.values()) / len(accuracy),
        "wikitext2_ppl": ppl,
    }
    params: dict[str, Any] = {
        "tasks": list(tasks), "limit": limit, "seed": seed, "num_fewshot": 0, "batch_size": batch_size,
        "data_source": f"mirror:{mirror}" if mirror is not None else "hub",
        "lm_eval_version": lm_eval.__version__,
        "task_sizes": {t: {"evaluated": r["n"], "total": r["total"]} for t, r in accuracy.items()},
        "ppl_split": "test", "ppl_seq_len": ppl_seq_len, "ppl_max_windows": ppl_max_windows, "ppl_windows": windows,
    }
    if latency is not None:
        from sprint.latency import measure_generate_latency

        measured = measure_generate_latency(
            model, latency.prompt_len, latency.gen_len, warmup=latency.extra.get("warmup", 1),
            repeats=latency.extra.get("repeats", 3), seed=seed,
        )
        metrics.update({
            "latency_s": measured["median_s"],
            "dense_latency_s": latency.dense_s,
            "measured_speedup": latency.dense_s / measured["median_s"],
            "latency_device": measured["device"],
        })
        params.update({"latency_prompt_len": latency.prompt_len, "latency_gen_len": latency.gen_len,
                       "latency_table_device": latency.device, "latency_table_model": latency.model})
        if latency.device != measured["device"]:
            log.warning("latency table was measured on %s, this run on %s: the speedup compares two machines",
                        latency.device, measured["device"])
    metrics["eval_params"] = params
    return metrics


def _pruning_record(model: str) -> dict[str, Any]:
    """Method, target and estimated speedup and pruning seed from ``<model>/pruning.json`` (dense if absent)."""
    path = Path(model) / "pruning.json"
    if not path.is_file():
        return {"method": "dense", "target_speedup": 1.0, "estimated_speedup": 1.0, "prune_seed": None}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return {"method": record["method"], "target_speedup": record["target_speedup"],
                "estimated_speedup": record["estimated_speedup"], "prune_seed": record.get("params", {}).get("seed")}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise SprintError(f"{path}: not a SPRINT pruning record ({type(err).__name__}: {err})") from None


def evaluate_to_file(
    model: str, output: str | os.PathLike, tasks: list[str], limit: int | None, seed: int, mirror: str | None,
    ppl_seq_len: int, ppl_max_windows: int | None, batch_size: int, latency: str | None, device: str, dtype: str,
) -> dict[str, Any]:
    """Evaluate a model folder / hub id and write the metrics JSON atomically to ``output``.

    Inputs (tasks, mirror, latency table, pruning record) are checked before the model is loaded.
    """
    check_tasks(tasks)
    mirror_path = data.resolve_mirror(mirror)
    if mirror_path is None and data.hub_offline():
        raise SprintError(f"no data mirror and the hub is offline: set ${data.MIRROR_ENV} or --mirror")
    if mirror_path is not None:
        for task in tasks:
            data.benchmark_file(task, mirror_path)
    record = _pruning_record(model)
    table = None
    if latency is not None:
        from sprint.latency import load_latency

        table = load_latency(latency)
        if table.prompt_len < 1 or table.gen_len < 1:
            raise SprintError(f"latency file {latency}: 'prompt_len' and 'gen_len' must be >= 1 to measure latency")
    from sprint.models import load_model

    lm, tokenizer = load_model(model, device=device, dtype=dtype)
    metrics = {"model": str(model), **record}
    metrics.update(evaluate_model(
        lm, tokenizer, tasks=tasks, limit=limit, seed=seed, mirror=mirror_path, ppl_seq_len=ppl_seq_len,
        ppl_max_windows=ppl_max_windows, batch_size=batch_size, latency=table,
    ))
    metrics["eval_params"].update({"device": device, "dtype": dtype, "model_dtype": str(next(lm.parameters()).dtype)})
    atomic_write_json(output, metrics)
    log.info("metrics -> %s: mean accuracy %.4f, ppl %.3f", output, metrics["mean_accuracy"], metrics["wikitext2_ppl"])
    return metrics
