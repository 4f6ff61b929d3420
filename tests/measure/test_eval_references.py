"""The evaluation against references computed another way.

Accuracy: for every task, the prompts, choices and gold answers of the project's local tasks (built from the data
mirror) equal those of lm-eval's *shipped* task configuration (its YAML and utils.py from the installed package)
applied to the same documents in the hub's record format.  Perplexity: exp(mean token loss) from the model's own
``labels=`` loss on the same windows.
"""

import json
import math
import random
from pathlib import Path

import lm_eval
import pytest
import torch

from sprint.model.tiny import tiny_model
from sprint.model.tiny import word_tokenizer as tiny_tokenizer
from sprint.data import sources
from sprint.measure.accuracy import LOCAL_PREFIX, TASK_METRIC, local_task_config
from sprint.measure.perplexity import wikitext2_perplexity

TASKS_DIR = Path(lm_eval.__file__).parent / "tasks"
SHIPPED = {
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "piqa": "piqa/piqa.yaml",
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
    for i in idx:
        a, b = mine[i], theirs[i]
        assert ours.doc_to_text(a) == ref.doc_to_text(b), f"{task} doc {i}: prompt"
        choices = ours.doc_to_choice(a)
        assert choices == ref.doc_to_choice(b), f"{task} doc {i}: choices"
        gold = ours.doc_to_target(a)
        assert gold == ref.doc_to_target(b) == raw[i]["label"], f"{task} doc {i}: gold"
        if task in ("arc_easy", "arc_challenge", "piqa"):  # the gold choice is the mirror's labelled answer
            answer = raw[i]["choices"][raw[i]["label"]] if "choices" in raw[i] else raw[i][f"sol{raw[i]['label'] + 1}"]
            assert choices[gold] == answer
    assert TASK_METRIC[task] == ("acc" if task == "boolq" else "acc_norm")


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
