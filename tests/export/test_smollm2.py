"""The embedded SmolLM2-135M and its checkpoints of every sublayer method at 1.2x in llama.cpp.

The checkpoints are pruned by ``sprint prune`` with a small calibration (8 windows x 128 tokens) and a latency
table written by hand (one attention 1%, one MLP 2% of the dense time, as on this CPU), so the test needs no
profile; every GGUF must give PyTorch's greedy continuation of 32 tokens and its WikiText-2 perplexity within 0.5%
at f32 and f16; q8_0's differences are printed (``-s``).  Marked heavy as well as slow: pruning four times and the
checks took 6 minutes of a quiet 2-core VM (80 while it was shared), beyond the default suite's budget (run with
``-m heavy``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from sprint.export.gguf import export_gguf  # noqa: E402
from sprint.export.llamacpp import KV_CACHE, compare, llamacpp_run, open_gguf, torch_run  # noqa: E402
from sprint.export.stage import check_text  # noqa: E402
from sprint.model.loading import load_model  # noqa: E402
from sprint.pipeline.cli import main  # noqa: E402

METHODS = ("sprint", "shortgpt", "sleb", "blockpruner")
LATENCY = {"dense_s": 1.0, "t_attn_s": 0.01, "t_mlp_s": 0.02}


@pytest.fixture(scope="module")
def pruned(smollm2, mirror, tmp_path_factory):
    """method -> its SmolLM2 checkpoint at 1.2x, pruned once per test session, or taken from the folder
    $SPRINT_TEST_PRUNED_SMOLLM2 (its {method}/ checkpoints, pruned by these same commands) when set."""
    given = os.environ.get("SPRINT_TEST_PRUNED_SMOLLM2")
    if given:
        return lambda method: Path(given) / method
    root = tmp_path_factory.mktemp("smollm2-pruned")
    (root / "latency.json").write_text(json.dumps(LATENCY))
    assert main(["calibrate", "--model", str(smollm2), "--mirror", str(mirror), "--n", "8", "--seq-len", "128",
                 "--output", str(root / "cal.pt")]) == 0
    made = {}

    def get(method: str):
        if method not in made:
            out = root / method
            extra = ["--ppl-windows", "1"] if method in ("sleb", "blockpruner") else []
            assert main(["prune", "--model", str(smollm2), "--device", "cpu", "--dtype", "float32", "--calibration",
                         str(root / "cal.pt"), "--latency", str(root / "latency.json"), "--method", method,
                         "--target-speedup", "1.2", *extra, "--output", str(out)]) == 0
            made[method] = out
        return made[method]

    return get


def _check(checkpoint, mirror, tmp_path, outtypes=("f32", "f16", "q8_0")) -> dict:
    model, tokenizer = load_model(str(checkpoint), device="cpu", dtype="float32")
    prompt, windows = check_text(tokenizer, mirror)
    ref = torch_run(model, prompt, windows, 32)
    out = {}
    for outtype in outtypes:
        gguf = tmp_path / f"{outtype}.gguf"
        info = export_gguf(checkpoint, gguf, outtype)
        out[outtype] = {**compare(ref, llamacpp_run(gguf, prompt, windows, 32, kv_cache=KV_CACHE[outtype])),
                        "mb": info["bytes"] / 1e6, "blocks": info["blocks"]}
        gguf.unlink()
        r = out[outtype]
        print(f"{checkpoint.name} {outtype}: {r['mb']:.1f} MB, greedy {'same' if r['greedy_match'] else 'differs'}, "
              f"perplexity {r['ppl_llamacpp']:.3f} vs {r['ppl_torch']:.3f} ({100 * r['ppl_rel_diff']:+.3f}%)")
    return out


def _assert_exact(results: dict) -> None:
    for outtype in ("f32", "f16"):
        r = results[outtype]
        assert r["greedy_match"] and abs(r["ppl_rel_diff"]) < 0.005, (outtype, r)
    assert abs(results["q8_0"]["ppl_rel_diff"]) < 0.05, results["q8_0"]


@pytest.mark.slow
def test_smollm2_gguf_carries_its_tokenizer(smollm2, mirror, tmp_path):
    from sprint.data.sources import wikitext2_text
    from transformers import AutoTokenizer

    export_gguf(smollm2, tmp_path / "d.gguf", "q8_0")
    tok = AutoTokenizer.from_pretrained(smollm2)
    llm = open_gguf(tmp_path / "d.gguf")
    try:
        text = wikitext2_text("test", mirror)[:20000] + "\n  Numbers 1234567, i'm  here\t ok?"
        assert llm.tokenize(text.encode(), add_bos=False) == tok(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(b"<|im_start|>user", add_bos=False, special=True) == tok("<|im_start|>user")["input_ids"]
        assert llm.token_eos() == tok.eos_token_id
    finally:
        llm.close()


@pytest.mark.slow
@pytest.mark.heavy
def test_dense_smollm2_runs_exactly_in_llama_cpp(smollm2, mirror, tmp_path):
    _assert_exact(_check(smollm2, mirror, tmp_path))


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("method", METHODS)
def test_pruned_smollm2_runs_exactly_in_llama_cpp(pruned, mirror, tmp_path, method):
    _assert_exact(_check(pruned(method), mirror, tmp_path))
