"""Zero-shot accuracy with lm-eval used as a library.

Accuracy follows the paper: zero-shot tasks scored by lm-eval's log-likelihood ranking, ``acc_norm`` where the
task's lm-eval configuration has it, else ``acc``, and the plain mean of the tasks.  Tasks are named by their
lm-eval registry names.  With a data mirror, a task it holds (:data:`MIRROR_TASKS`: ARC-Challenge, ARC-Easy,
BoolQ, COPA, HellaSwag, OpenBookQA, PIQA, WinoGrande) is built from its jsonl file as a local lm-eval task whose
prompt, choices, gold answer and metric match lm-eval's shipped configuration (tests/measure/test_eval_references.py
checks each against the installed YAML); WinoGrande is scored as lm-eval's is, by partial scoring (the
continuation after each option).  Any other name, and every name without a mirror, is lm-eval's own task
(fetching its data from the hub): a single multiple-choice task of its registry.  Offline (``HF_HUB_OFFLINE`` /
``HF_DATASETS_OFFLINE``) only the mirror's tasks exist; an unknown name is a one-line :class:`SprintError` naming
it and listing what is available (:func:`resolve_tasks`).  Partial evaluation draws a seeded random subset of each
task (lm-eval's ``limit`` would take the first N documents).

Each task's record (:func:`zero_shot_accuracy`) holds, besides the accuracy, what chance-aware reading needs:

- ``source``: ``"mirror"`` (a local task over the mirror's file) or ``"lm-eval"`` (lm-eval's task, hub data);
- ``n_choices``, ``gold``, ``predicted``: per evaluated document (aligned with ``doc_ids``) its number of choices,
  the index of the gold answer and the index the model picked under the task's metric (``correct`` is
  ``predicted == gold``);
- ``chance``: the accuracy of a uniform random guess on the evaluated documents, the mean of 1 / ``n_choices``
  (1 / the number of choices where every document has the same);
- for binary tasks (two choices on every evaluated document) also ``answers`` (the two answers' names: the
  choice texts where every document has the same, e.g. ``["no", "yes"]``, else the record fields, e.g.
  ``["sol1", "sol2"]``), ``majority_answer`` and ``majority_rate`` (the most common gold answer among the
  evaluated documents and its share: the accuracy of always giving it), ``majority_rate_all`` (the same over all
  the task's documents), ``gold_shares`` and ``answer_shares`` (each answer's share of the gold answers and of the
  model's predictions, keyed by answer name): a model that answers "no" to nearly everything shows there.
"""

from __future__ import annotations

import difflib
import functools
import logging
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

from sprint.data import sources
from sprint.errors import SprintError

log = logging.getLogger("sprint")


LOCAL_PREFIX = "sprint_"  # local task names must not collide with lm-eval's built-in ones



# The legacy names of the mirror's cleaning helpers (now in sprint.data.sources, which the held-out corpus shares)
_hellaswag_clean = sources.hellaswag_clean
_hellaswag_query = sources.hellaswag_query



def _hellaswag_docs(dataset: Any) -> Any:
    """``process_docs`` of the local HellaSwag task: the built-in task's query and ending preprocessing.

    Never from the ``datasets`` cache: its key does not see an edit of the helpers ``clean`` calls, so a cached map
    would silently evaluate with the old preprocessing.
    """
    def clean(doc: dict) -> dict:
        return {"query": sources.hellaswag_query(doc["query"]),
                "choices": [sources.hellaswag_clean(c) for c in doc["choices"]]}

    return dataset.map(clean, load_from_cache_file=False)



def _copa_choices(doc: dict) -> list[str]:
    """lm-eval's ``super_glue/copa/utils.py``: each alternative with a leading space and its first letter lowered
    (the mirror's ``query`` already is the premise without its full stop plus " because" / " therefore")."""
    return [" " + c[:1].lower() + c[1:] for c in doc["choices"]]



_ARC = {"doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_choice": "choices"}



# The tasks a data mirror can hold (benchmarks/<name>.jsonl), by lm-eval registry name: the metric (acc_norm where
# lm-eval's configuration lists it), the prompt fields of the local task, and for binary tasks with per-document
# answer texts the answers' names.  The record formats are in the mirror's README.
MIRROR_TASKS: dict[str, dict[str, Any]] = {
    "arc_challenge": {"metric": "acc_norm", **_ARC},
    "arc_easy": {"metric": "acc_norm", **_ARC},
    "boolq": {"metric": "acc", "doc_to_text": "{{passage}}\nQuestion: {{question}}?\nAnswer:",
              "doc_to_choice": ["no", "yes"]},
    "copa": {"metric": "acc", "doc_to_text": "query", "doc_to_choice": _copa_choices,
             "answers": ["choice1", "choice2"]},
    "hellaswag": {"metric": "acc_norm", "doc_to_text": "{{query}}", "doc_to_choice": "choices",
                  "process_docs": _hellaswag_docs},
    "openbookqa": {"metric": "acc_norm", "doc_to_text": "question", "doc_to_choice": "choices"},
    "piqa": {"metric": "acc_norm", "doc_to_text": "Question: {{goal}}\nAnswer:", "doc_to_choice": "{{[sol1, sol2]}}",
             "answers": ["sol1", "sol2"]},
    # partial scoring: doc_to_text is the gold index, so lm-eval scores the continuation after each option's context
    "winogrande": {"metric": "acc", "doc_to_text": "label", "doc_to_choice": "options",
                   "doc_to_target": "continuation", "answers": ["option1", "option2"]},
}
TASK_METRIC = {task: spec["metric"] for task, spec in MIRROR_TASKS.items()}
_CONFIG_KEYS = ("doc_to_text", "doc_to_choice", "doc_to_target", "process_docs")



def local_task_config(task: str, mirror: Path) -> dict[str, Any]:
    """An lm-eval task config (dict form) reading ``benchmarks/<task>.jsonl`` from the mirror."""
    if task not in MIRROR_TASKS:
        raise SprintError(f"no local task {task!r}: a mirror can hold {', '.join(MIRROR_TASKS)}")
    spec = MIRROR_TASKS[task]
    return {
        "task": LOCAL_PREFIX + task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(sources.benchmark_file(task, mirror))}},
        "output_type": "multiple_choice",
        "test_split": "test",
        "doc_to_target": "label",
        "num_fewshot": 0,
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")],
        "metadata": {"version": 1.0},
        **{k: v for k, v in spec.items() if k in _CONFIG_KEYS},
    }



def mirror_tasks(mirror: Path) -> list[str]:
    """The tasks the mirror holds: the names of :data:`MIRROR_TASKS` with a ``benchmarks/<name>.jsonl``."""
    return [t for t in MIRROR_TASKS if (Path(mirror) / "benchmarks" / f"{t}.jsonl").is_file()]



@functools.lru_cache(maxsize=1)
def _registry() -> Any:
    """lm-eval's TaskManager over its built-in tasks (indexing them takes ~12 s: once per process)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=True)



def _unknown(name: str, available: list[str], where: str) -> SprintError:
    close = difflib.get_close_matches(name, available, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return SprintError(f"tasks: unknown task {name!r}{hint}; {where}")



def resolve_tasks(tasks: list[str], mirror: Path | None) -> dict[str, str]:
    """Where each task comes from: ``{name: "mirror" | "lm-eval"}``, in the order given.

    A name the mirror holds is the mirror's; with the hub online any other name must be a single task of
    lm-eval's registry (not a group or tag: those name several tasks); offline only the mirror's tasks exist.
    Raises a one-line SprintError naming the first bad name and what is available.
    """
    held = mirror_tasks(mirror) if mirror is not None else []
    if not tasks:
        raise SprintError(f"tasks: empty list; choose from {', '.join(held) or 'lm-eval task names'}")
    if len(set(tasks)) != len(tasks):
        raise SprintError(f"tasks: {','.join(tasks)} names a task twice")
    plan = {t: "mirror" for t in tasks if t in held}
    others = [t for t in tasks if t not in plan]
    if others and sources.hub_offline():
        where = (f"offline, the data mirror {mirror} holds {', '.join(held)}" if mirror is not None
                 else f"offline without a data mirror no task is available (set ${sources.MIRROR_ENV})")
        raise _unknown(others[0], held, where)
    if others:
        from lm_eval.tasks._index import Kind

        registry = _registry()
        for name in others:
            entry = registry.task_index.get(name)
            if entry is None:
                raise _unknown(name, registry.all_subtasks, f"lm-eval {_lm_eval_version()} has "
                               f"{len(registry.all_subtasks)} tasks (`lm-eval ls tasks`)"
                               + (f"; the data mirror holds {', '.join(held)}" if held else ""))
            if entry.kind not in (Kind.TASK, Kind.PY_TASK):
                raise SprintError(f"tasks: {name!r} is an lm-eval {entry.kind.name.lower()} of several tasks: name "
                                  f"its tasks one by one")
            plan[name] = "lm-eval"
    return {t: plan[t] for t in tasks}



def _lm_eval_version() -> str:
    import lm_eval

    return lm_eval.__version__



def check_tasks(tasks: list[str], mirror: Path | None = None) -> dict[str, str]:
    """:func:`resolve_tasks` (kept under its old name for the callers that only check)."""
    return resolve_tasks(tasks, mirror)



def task_metric(name: str, task: Any) -> str:
    """The metric reported for a loaded lm-eval task: ``acc_norm`` where its configuration lists it, else ``acc``."""
    if getattr(task, "OUTPUT_TYPE", None) != "multiple_choice":
        raise SprintError(f"tasks: {name!r} is an lm-eval {getattr(task, 'OUTPUT_TYPE', '?')} task: sprint scores "
                          f"multiple-choice tasks by log-likelihood ranking")
    if getattr(task, "multiple_target", 0):
        raise SprintError(f"tasks: {name!r} has several gold answers per document: not supported")
    metrics = set(task.aggregation())
    for metric in ("acc_norm", "acc"):
        if metric in metrics:
            return metric
    raise SprintError(f"tasks: {name!r} reports neither acc nor acc_norm ({', '.join(sorted(metrics))})")



def seeded_subset(n: int, limit: int | None, seed: int) -> list[int] | None:
    """Sorted indices of a seeded random subset of ``limit`` of ``n`` documents (None = all of them)."""
    if limit is None or limit >= n:
        return None
    return sorted(random.Random(seed).sample(range(n), limit))



def _gold_index(task: Any, doc: dict, choices: list[str]) -> int:
    """The gold answer's index, as lm-eval's ``process_results`` finds it."""
    gold = task.doc_to_text(doc) if getattr(task, "multiple_input", 0) else task.doc_to_target(doc)
    if isinstance(gold, str):
        gold = choices.index(gold) if gold in choices else -100
    return int(gold)



def _prediction(task: Any, sample: dict, metric: str) -> tuple[int, int, int]:
    """(gold, predicted, number of choices) of one logged lm-eval sample: the argmax of the choices'
    log-likelihoods, divided by the choices' lengths in characters for ``acc_norm`` (lm-eval's ``pred_norm``)."""
    import numpy as np

    choices = task.doc_to_choice(sample["doc"])
    lls = np.array([float(r[0]) for r in sample["filtered_resps"]][: len(choices)])
    if metric == "acc_norm":
        lls = lls / np.array([float(len(c)) for c in choices])
    return _gold_index(task, sample["doc"], choices), int(np.argmax(lls)), len(choices)



def answer_record(gold: list[int], predicted: list[int], n_choices: list[int], all_gold: list[int],
                  names: list[str] | None) -> dict[str, Any]:
    """The chance-aware fields of a task's record (see the module docstring)."""
    out: dict[str, Any] = {"n_choices": n_choices, "gold": gold, "predicted": predicted,
                           "chance": sum(1 / k for k in n_choices) / len(n_choices)}
    if set(n_choices) != {2}:
        return out
    names = names or ["0", "1"]
    n = len(gold)
    counts = Counter(gold)
    majority = max((0, 1), key=lambda a: (counts[a], -a))
    everywhere = Counter(all_gold)
    out.update({
        "answers": names, "majority_answer": names[majority], "majority_rate": counts[majority] / n,
        "majority_rate_all": max(everywhere[0], everywhere[1]) / max(1, len(all_gold)),
        "gold_shares": {names[a]: counts[a] / n for a in (0, 1)},
        "answer_shares": {names[a]: sum(p == a for p in predicted) / n for a in (0, 1)},
    })
    return out



def _answer_names(task_name: str, task: Any, docs: list[dict]) -> list[str] | None:
    """Names of a binary task's two answers: the choice texts if every document has the same ones, else the
    mirror task's record fields (``sol1``, ``sol2``), else None ("0", "1")."""
    if docs and not getattr(task, "multiple_input", 0):
        first = [c.strip() for c in task.doc_to_choice(docs[0])]
        if all([c.strip() for c in task.doc_to_choice(d)] == first for d in docs[1:]):
            return first
    return MIRROR_TASKS.get(task_name, {}).get("answers")



def zero_shot_accuracy(
    model: Any, tokenizer: Any, tasks: list[str], limit: int | None, seed: int, mirror: Path | None, batch_size: int,
) -> dict[str, dict]:
    """Zero-shot accuracy per task: ``{task: {"metric", "value", "stderr", "n", "total", "doc_ids", "correct",
    "source", "n_choices", "gold", "predicted", "chance", ...}}`` (the chance-aware fields: module docstring).

    ``tasks``: lm-eval registry names (:func:`resolve_tasks`).  ``mirror`` given: the tasks it holds are local tasks
    over its jsonl files (no hub access); the others, and all without a mirror, are lm-eval's own.
    ``limit``: a random subset of that many documents per task, drawn with ``seed`` (None = whole task).
    ``stderr`` is lm-eval's standard error of the mean, sqrt(p (1 − p) / (n − 1)) for 0/1 scores.
    ``doc_ids`` (lm-eval's index into the task's documents, ascending) and ``correct`` (0/1 per document, the task's
    metric) are what paired comparisons of models evaluated on the same documents need.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    plan = resolve_tasks(tasks, mirror)
    if limit is not None and limit < 1:
        raise SprintError(f"limit: must be a positive number of documents, got {limit}")
    local = [t for t, where in plan.items() if where == "mirror"]
    online = [t for t, where in plan.items() if where == "lm-eval"]
    manager = _registry() if online else TaskManager(include_defaults=False)  # indexing lm-eval's tasks: ~12 s
    loaded = manager.load([local_task_config(t, mirror) for t in local] + online)["tasks"]
    names = {(LOCAL_PREFIX + t if where == "mirror" else t): t for t, where in plan.items()}
    metrics = {name: TASK_METRIC[t] if plan[t] == "mirror" else task_metric(t, loaded[name])
               for name, t in names.items()}
    totals = {name: len(loaded[name].eval_docs) for name in names}
    samples = {name: idx for name in names if (idx := seeded_subset(totals[name], limit, seed)) is not None}
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    results = lm_eval.simple_evaluate(
        model=lm, tasks=[loaded[name] for name in names], task_manager=manager, samples=samples or None,
        log_samples=True,
        random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
    )
    out = {}
    for name, task in names.items():
        obj, metric, row = loaded[name], metrics[name], results["results"][name]
        stderr = row.get(f"{metric}_stderr,none")
        logged = sorted((d for d in results["samples"][name] if d["filter"] == "none"), key=lambda d: d["doc_id"])
        picks = [_prediction(obj, d, metric) for d in logged]
        correct = [int(d[metric]) for d in logged]
        if any(int(p == g) != c for (g, p, _), c in zip(picks, correct)):
            raise SprintError(f"{task}: the predictions recomputed from lm-eval's log-likelihoods disagree with its "
                              f"{metric} (an lm-eval version whose scoring sprint does not know?)")
        docs = list(obj.eval_docs)
        all_gold = ([_gold_index(obj, d, obj.doc_to_choice(d)) for d in docs]
                    if {k for _, _, k in picks} == {2} else [])
        out[task] = {
            "metric": metric,
            "value": float(row[f"{metric},none"]),
            "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
            "n": int(results["n-samples"][name]["effective"]),
            "total": totals[name],
            "doc_ids": [d["doc_id"] for d in logged],
            "correct": correct,
            "source": plan[task],
            **answer_record([g for g, _, _ in picks], [p for _, p, _ in picks], [k for _, _, k in picks],
                            all_gold, _answer_names(task, obj, docs) if all_gold else None),
        }
        log.info("%s: %s = %.4f (n = %d of %d, chance %.3f%s)", task, metric, out[task]["value"], out[task]["n"],
                 totals[name], out[task]["chance"],
                 f", majority {out[task]['majority_rate']:.3f}" if "majority_rate" in out[task] else "")
    return out



def mean_stderr(stderrs: list[float | None]) -> float | None:
    """Standard error of the mean of T task accuracies: sqrt(Σ stderr_t²) / T (None if any task lacks one).

    The tasks are independent samples of documents, so the variances of their accuracies add.
    """
    if any(s is None for s in stderrs):
        return None
    return math.sqrt(sum(s * s for s in stderrs)) / len(stderrs)

