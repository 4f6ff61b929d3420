"""The evaluation against references computed another way.

Accuracy: for every task the mirror holds, the prompts, choices, gold answers and the log-likelihood requests of
the project's local tasks (built from the data mirror) equal those of lm-eval's *shipped* task configuration (its
YAML and utils.py from the installed package) applied to the same documents in the hub's record format, and the
reported metric is the one the shipped configuration's metric list implies (acc_norm where listed, else acc).  Perplexity: exp(mean token loss) from the model's own
``labels=`` loss on the same windows.
"""

import json
import math
import os
import random
from pathlib import Path

import lm_eval
import pytest
import torch

from sprint.model.tiny import tiny_model
from sprint.model.tiny import word_tokenizer as tiny_tokenizer
from sprint.data import sources
from sprint.measure.accuracy import LOCAL_PREFIX, MIRROR_TASKS, TASK_METRIC, local_task_config
from sprint.measure.perplexity import wikitext2_perplexity

TASKS_DIR = Path(lm_eval.__file__).parent / "tasks"
SHIPPED = {
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "piqa": "piqa/piqa.yaml",
    "copa": "super_glue/copa/default.yaml",
    "openbookqa": "openbookqa/openbookqa.yaml",
    "winogrande": "winogrande/default.yaml",
}
SAMPLE = 400  # documents compared per task (seeded, plus the first 20)


def hellaswag_raw(doc: dict) -> dict:
    """The hub's raw HellaSwag fields from a mirror record.  The mirror joins ``ctx_a`` and ``ctx_b`` after the
    activity label; ``ctx_b`` is the unfinished fragment after the context's last sentence end (empty if none)."""
    prefix = doc["activity_label"] + ": "
    assert doc["query"].startswith(prefix)
    ctx = doc["query"][len(prefix):]
    cut = max(ctx.rfind(p) for p in (". ", "! ", "? "))
    ctx_a, ctx_b = (ctx[: cut + 1], ctx[cut + 2:]) if cut >= 0 else ("", ctx)
    if ctx.rstrip()[-1:] in ".!?":
        ctx_a, ctx_b = ctx, ""
    return {"activity_label": doc["activity_label"], "ctx_a": ctx_a, "ctx_b": ctx_b, "endings": doc["choices"],
            "label": str(doc["label"])}


def hub_record(task: str, doc: dict) -> dict:
    """A mirror record (see the mirror's README) in the format of the hub dataset lm-eval's YAML reads."""
    if task.startswith("arc"):
        letters = "ABCDE"[: len(doc["choices"])]
        return {"question": doc["question"], "choices": {"text": doc["choices"], "label": list(letters)},
                "answerKey": letters[doc["label"]]}
    if task == "hellaswag":
        return hellaswag_raw(doc)
    if task == "openbookqa":
        letters = "ABCD"[: len(doc["choices"])]
        return {"question_stem": doc["question"], "choices": {"text": doc["choices"], "label": list(letters)},
                "answerKey": letters[doc["label"]]}
    if task == "copa":  # query = premise without its full stop + " because" (cause) / " therefore" (effect)
        premise, _, connector = doc["query"].rpartition(" ")
        return {"premise": premise + ".", "question": {"because": "cause", "therefore": "effect"}[connector],
                "choice1": doc["choices"][0], "choice2": doc["choices"][1], "label": doc["label"]}
    if task == "winogrande":  # options = the sentence up to its blank + each option: cut at the options' last
        a, b = doc["options"]  # common word boundary
        cut = os.path.commonprefix([a, b]).rfind(" ") + 1
        assert a[:cut] == b[:cut] and a[cut:] and b[cut:]
        return {"sentence": a[:cut] + "_ " + doc["continuation"], "option1": a[cut:], "option2": b[cut:],
                "answer": str(doc["label"] + 1)}
    return dict(doc)  # boolq (passage, question, label), piqa (goal, sol1, sol2, label): the hub's field names


def shipped_config(task: str, mirror: Path, tmp_path: Path) -> dict:
    """lm-eval's shipped config for ``task``, reading the mirror's documents converted to the hub's format."""
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(TASKS_DIR / SHIPPED[task])
    docs = [json.loads(line) for line in sources.benchmark_file(task, mirror).read_text().splitlines() if line.strip()]
    path = tmp_path / f"{task}.jsonl"
    path.write_text("".join(json.dumps(hub_record(task, d)) + "\n" for d in docs))
    for key in ("tag", "dataset_name", "training_split", "validation_split", "include"):
        cfg.pop(key, None)
    cfg.update(task="reference_" + task, dataset_path="json", dataset_kwargs={"data_files": {"test": str(path)}},
               test_split="test", num_fewshot=0)
    return cfg


@pytest.fixture(scope="module")
def loaded_tasks(mirror, tmp_path_factory):
    from lm_eval.tasks import TaskManager

    tmp = tmp_path_factory.mktemp("hub")
    specs = [local_task_config(t, mirror) for t in SHIPPED] + [shipped_config(t, mirror, tmp) for t in SHIPPED]
    # the reference tasks in a fresh datasets cache (its map cache key does not see the functions process_docs
    # calls); ours use the shared cache, whose stale maps sprint.measure.accuracy must not reuse
    for spec in specs[len(SHIPPED):]:
        spec["dataset_kwargs"] = {**spec["dataset_kwargs"], "cache_dir": str(tmp / "datasets-cache")}
    return TaskManager(include_defaults=False).load(specs)["tasks"]


@pytest.mark.parametrize("task", list(SHIPPED))
def test_prompts_choices_and_gold_equal_lm_eval_shipped_config(task, loaded_tasks, mirror):
    ours, ref = loaded_tasks[LOCAL_PREFIX + task], loaded_tasks["reference_" + task]
    mine, theirs = list(ours.eval_docs), list(ref.eval_docs)
    raw = [json.loads(line) for line in sources.benchmark_file(task, mirror).read_text().splitlines() if line.strip()]
    assert len(mine) == len(theirs) == len(raw)
    idx = sorted(set(range(20)) | set(random.Random(0).sample(range(len(mine)), min(SAMPLE, len(mine)))))
    assert bool(ours.multiple_input) == bool(ref.multiple_input) == (task == "winogrande")  # partial scoring
    for i in idx:
        a, b = mine[i], theirs[i]
        assert ours.doc_to_text(a) == ref.doc_to_text(b), f"{task} doc {i}: prompt"
        choices = ours.doc_to_choice(a)
        assert choices == ref.doc_to_choice(b), f"{task} doc {i}: choices"
        assert ours.doc_to_target(a) == ref.doc_to_target(b) or task == "copa", f"{task} doc {i}: target"
        gold = gold_index(ours, a)
        assert gold == gold_index(ref, b) == raw[i]["label"], f"{task} doc {i}: gold"
        assert requests(ours, a) == requests(ref, b), f"{task} doc {i}: log-likelihood requests"
        if task in ("arc_easy", "arc_challenge", "piqa", "openbookqa"):  # the gold choice is the labelled answer
            answer = raw[i]["choices"][raw[i]["label"]] if "choices" in raw[i] else raw[i][f"sol{raw[i]['label'] + 1}"]
            assert choices[gold] == answer
    listed = [m["metric"] for m in ref.config.metric_list]
    assert TASK_METRIC[task] == ("acc_norm" if "acc_norm" in listed else "acc") and TASK_METRIC[task] in listed


def gold_index(task, doc) -> int:
    """The gold choice's index as lm-eval's process_results finds it (COPA's shipped target is the answer text,
    WinoGrande's gold is its doc_to_text)."""
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    return task.doc_to_choice(doc).index(gold) if isinstance(gold, str) else gold


def requests(task, doc) -> list[tuple]:
    """The (context, continuation) pairs lm-eval scores for a document, zero-shot."""
    ctx = task.fewshot_context(doc, 0)
    return [r.args for r in task.construct_requests(doc, ctx, metadata=(task.task_name, 0, 1))]


def test_winogrande_is_partially_scored(loaded_tasks):
    """Hand-checked: the first WinoGrande dev document is scored as the continuation after each option."""
    ours = loaded_tasks[LOCAL_PREFIX + "winogrande"]
    doc = list(ours.eval_docs)[0]
    assert requests(ours, doc) == [("Sarah was a much better surgeon than Maria so Sarah", " always got the easier cases."),
                                   ("Sarah was a much better surgeon than Maria so Maria", " always got the easier cases.")]
    assert gold_index(ours, doc) == 1


def test_copa_known_document(loaded_tasks):
    """Hand-checked: lm-eval's COPA prompt drops the premise's full stop, and its choices carry a leading space."""
    ours = loaded_tasks[LOCAL_PREFIX + "copa"]
    doc = list(ours.eval_docs)[0]
    assert requests(ours, doc) == [("The man turned on the faucet, therefore", "  the toilet filled with water."),
                                   ("The man turned on the faucet, therefore", "  water flowed from the spout.")]
    assert set(MIRROR_TASKS) == set(SHIPPED)  # every task a mirror can hold is checked here


def test_hellaswag_known_documents(loaded_tasks):
    """Hand-checked: the first two HellaSwag validation documents as lm-eval's built-in task renders them
    (activity label, ctx_a, capitalised ctx_b)."""
    ours = loaded_tasks[LOCAL_PREFIX + "hellaswag"]
    docs = list(ours.eval_docs)[:2]
    assert ours.doc_to_text(docs[0]) == "Roof shingle removal: A man is sitting on a roof. He"
    assert ours.doc_to_text(docs[1]) == ("Clean and jerk: A lady walks to a barbell. She bends down and grabs the "
                                         "pole. The lady")
    assert ours.doc_to_target(docs[0]) == 3 and ours.doc_to_target(docs[1]) == 3
    assert ours.doc_to_choice(docs[0])[3] == "starts pulling up roofing on a roof."


def test_perplexity_is_exp_mean_model_loss(mirror):
    model, tok = tiny_model("qwen2", 2), tiny_tokenizer()
    seq_len, windows = 32, 5
    ppl = wikitext2_perplexity(model, tok, mirror, seq_len=seq_len, max_windows=windows, batch_size=2)
    ids = tok(sources.wikitext2_text("test", mirror), add_special_tokens=False).input_ids
    losses = []
    with torch.inference_mode():
        for w in range(windows):
            x = torch.tensor(ids[w * seq_len:(w + 1) * seq_len])[None]
            losses.append(model(input_ids=x, labels=x).loss.item())
    assert ppl == pytest.approx(math.exp(sum(losses) / windows), rel=1e-5)
