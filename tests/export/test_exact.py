"""llama.cpp runs the exported GGUF as PyTorch runs the checkpoint: for every family and removal pattern, the same
greedy continuation of 32 tokens and the same perplexity (within 0.5%) at f32 and f16; q8_0's differences are
reported (``-s`` prints the table) and only bounded loosely.  Also: llama.cpp tokenizes text as the checkpoint's
tokenizer does, so the file runs alone."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

from sprint.export.gguf import export_gguf  # noqa: E402
from sprint.export.llamacpp import KV_CACHE, compare, llamacpp_run, open_gguf, torch_run  # noqa: E402
from sprint.model.loading import load_model  # noqa: E402

from export_cases import FAMILIES, HELD_OUT, PATTERNS, token_data  # noqa: E402

N_NEW = 32
# The tiny random models predict nearly uniformly (perplexity ~600 over 320 tokens): at some greedy steps PyTorch's
# own top two logits are 1e-4..1e-3 of the logit scale apart, and rounding the weights to f16 flips such a step in
# PyTorch itself (tests/export/test_exact.py::test_f16_greedy_differences_are_near_ties).  At f16 a continuation
# may therefore part only at a step whose margin is below NEAR_TIE of the logit scale (f16's logit error: ~3e-3).
NEAR_TIE = 0.01
ROWS: list[str] = []


@pytest.fixture(scope="module")
def reference(tiny_checkpoint, bpe):
    """(family, pattern) -> (checkpoint, PyTorch run), computed once."""
    cache = {}

    def get(family: str, pattern: str):
        if (family, pattern) not in cache:
            ckpt = tiny_checkpoint(family, pattern)
            model, _ = load_model(str(ckpt), device="cpu", dtype="float32")
            prompt, windows = token_data(bpe)
            cache[family, pattern] = ckpt, torch_run(model, prompt, windows, N_NEW), prompt, windows
        return cache[family, pattern]

    return get


@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("family", FAMILIES)
def test_llama_cpp_matches_pytorch(reference, tmp_path, family, pattern, outtype):
    ckpt, ref, prompt, windows = reference(family, pattern)
    out = tmp_path / f"{family}-{pattern}.{outtype}.gguf"
    export_gguf(ckpt, out, outtype)
    r = compare(ref, llamacpp_run(out, prompt, windows, N_NEW, kv_cache=KV_CACHE[outtype]))
    match = "yes" if r["greedy_match"] else (f"from step {r['greedy_first_difference']} (PyTorch's top two "
                                              f"{r['greedy_margin_at_difference'] / r['logit_scale']:.0e} apart)")
    ROWS.append(f"| {family} | {pattern} | {outtype} | {match} | {100 * r['ppl_rel_diff']:+.4f}% "
                f"| {r['max_abs_logit_diff'] / r['logit_scale']:.1e} |")
    if outtype == "q8_0":  # reported, bounded loosely
        assert abs(r["ppl_rel_diff"]) < 0.05, r
        return
    assert abs(r["ppl_rel_diff"]) < 0.005, r
    if outtype == "f32":  # with an f32 KV cache: the export alone, equal to float32 rounding
        assert r["greedy_match"] and r["max_abs_logit_diff"] < 1e-5 * r["logit_scale"], r
    else:  # weights, activations and KV cache rounded to f16: ~3e-3 of the logit scale
        assert r["max_abs_logit_diff"] < 1e-2 * r["logit_scale"], r
        assert r["greedy_match"] or r["greedy_margin_at_difference"] < NEAR_TIE * r["logit_scale"], r


def test_zz_print_table():
    """The pattern x family table of this run (pytest -s shows it)."""
    if ROWS:
        print("\n| family | pattern | GGUF | greedy 32 same | perplexity diff | max logit diff / logit scale |\n|---|---|---|---|---|---|")
        print("\n".join(ROWS))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_gguf_carries_the_tokenizer(tiny_checkpoint, bpe, tmp_path, family):
    out = tmp_path / "t.gguf"
    export_gguf(tiny_checkpoint(family, "dense"), out, "f16")
    llm = open_gguf(out)
    try:
        for text in (HELD_OUT[:400], "  the 2024 river's tower ,  isn't\n\n it ? 1889", "unseen words: zebra 42!"):
            assert llm.tokenize(text.encode(), add_bos=False) == bpe(text, add_special_tokens=False)["input_ids"]
            ids = bpe(text, add_special_tokens=False)["input_ids"]
            assert llm.detokenize(ids).decode() == bpe.decode(ids)
        assert llm.token_eos() == bpe.eos_token_id and llm.token_bos() == bpe.bos_token_id
    finally:
        llm.close()


def test_f16_greedy_differences_are_near_ties(tiny_checkpoint, bpe):
    """Where llama.cpp's f16 continuation parts from PyTorch's (Llama, "last-mlp": step 27), PyTorch with its weights
    rounded to f16 parts at the same step: the f16 format flips the near-tie, not the export."""
    import torch

    model, _ = load_model(str(tiny_checkpoint("llama", "last-mlp")), device="cpu", dtype="float32")
    prompt, windows = token_data(bpe)
    ref = torch_run(model, prompt, windows, N_NEW)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    rounded = compare(ref, torch_run(model, prompt, windows, N_NEW))
    assert rounded["greedy_first_difference"] == 27 and rounded["greedy_margin_at_difference"] < 1e-3, rounded


def test_per_layer_heads_and_widths_export_exactly(bpe, tmp_path):
    """A structurally pruned checkpoint (LLM-Pruner: each layer's query heads and MLP width, config
    sprint_layer_shapes) maps onto deci's per-layer head counts and FFN widths; here with an MLP removed too."""
    import torch

    from sprint.model.checkpoint import save_pruned
    from sprint.model.modeling_sprint import set_layer_shapes, set_removed
    from sprint.model.tiny import tiny_model

    model = tiny_model("llama", 4, vocab_size=len(bpe), pad_token_id=bpe.pad_token_id)
    set_layer_shapes(model, [[2, 64], [1, 32], [2, 48], [1, 64]])
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    set_removed(model, [(3, "mlp")])
    ckpt = save_pruned(model, bpe, tmp_path / "ckpt", {"method": "llm-pruner", "removed": []})
    model, _ = load_model(str(ckpt), device="cpu", dtype="float32")
    prompt, windows = token_data(bpe)
    export_gguf(ckpt, tmp_path / "s.gguf", "f32")
    r = compare(torch_run(model, prompt, windows, N_NEW), llamacpp_run(tmp_path / "s.gguf", prompt, windows, N_NEW,
                                                                      kv_cache="f32"))
    assert r["greedy_match"] and r["max_abs_logit_diff"] < 1e-5 * r["logit_scale"], r
