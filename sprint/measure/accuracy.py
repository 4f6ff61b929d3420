"""Zero-shot accuracy with lm-eval used as a library.

Accuracy follows the paper: zero-shot ARC-Challenge, ARC-Easy, BoolQ, HellaSwag and PIQA scored by lm-eval's
log-likelihood ranking, ``acc_norm`` where the task has it, else ``acc``, and the plain mean of the tasks.
With a data mirror the tasks are built from its jsonl files as local lm-eval tasks whose prompts match the
built-in ones; without one the built-in tasks fetch their data from the hub.  Partial evaluation draws a
seeded random subset of each task (lm-eval's ``limit`` would take the first N documents).
"""

from __future__ import annotations

import logging
import math
import random
import re
from pathlib import Path
from typing import Any

from sprint.data import sources
from sprint.errors import SprintError

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
        "dataset_kwargs": {"data_files": {"test": str(sources.benchmark_file(task, mirror))}},
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

