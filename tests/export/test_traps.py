"""The places where llama.cpp's deci graph (llama-cpp-python 0.3.36) does not compute what the naive one-to-one
export's metadata says, reproduced on a tiny Llama; the exact export of the same checkpoints matches PyTorch.
If a later llama.cpp fixes them, these tests fail and the stand-ins can go.

- Trap 1, attention kept and FFN removed: on an inner layer the attention's output is silently dropped (the logits
  move by whole units); on the last layer llama.cpp aborts the process at the first decode (``GGML_ASSERT(buffer)``:
  the output-row selection never enters the graph, and setting its input finds no buffer).
- Trap 2, layer 0 without attention: the head size becomes 0 and the file does not load.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("llama_cpp")

from sprint.export.gguf import export_gguf  # noqa: E402
from sprint.export.llamacpp import LlamaLoadError, compare, llamacpp_run, torch_run  # noqa: E402
from sprint.model.loading import load_model  # noqa: E402

from export_cases import token_data  # noqa: E402


def _runs(tiny_checkpoint, bpe, tmp_path, pattern, exact):
    ckpt = tiny_checkpoint("llama", pattern)
    model, _ = load_model(str(ckpt), device="cpu", dtype="float32")
    prompt, windows = token_data(bpe)
    out = tmp_path / f"{pattern}-{'exact' if exact else 'naive'}.gguf"
    export_gguf(ckpt, out, "f32", exact=exact)
    return compare(torch_run(model, prompt, windows, 32), llamacpp_run(out, prompt, windows, 32, kv_cache="f32"))


def _exact(r: dict) -> bool:
    """Equal to float32 rounding (the f32 GGUF with an f32 KV cache)."""
    return r["greedy_match"] and abs(r["ppl_rel_diff"]) < 1e-4 and r["max_abs_logit_diff"] < 1e-4 * r["logit_scale"]


def test_trap1_inner_attention_without_ffn_is_dropped(tiny_checkpoint, bpe, tmp_path):
    naive = _runs(tiny_checkpoint, bpe, tmp_path, "mlp", exact=False)
    assert naive["max_abs_logit_diff"] > 0.05 * naive["logit_scale"] and abs(naive["ppl_rel_diff"]) > 0.01, naive
    assert _exact(_runs(tiny_checkpoint, bpe, tmp_path, "mlp", exact=True))


@pytest.mark.parametrize("pattern", ["last-mlp", "last-both"])
def test_trap1_last_layer_without_ffn_aborts_llama_cpp(tiny_checkpoint, bpe, tmp_path, pattern):
    out = tmp_path / "naive.gguf"
    export_gguf(tiny_checkpoint("llama", pattern), out, "f32", exact=False)
    code = f"import llama_cpp; llm = llama_cpp.Llama({str(out)!r}, n_ctx=64, verbose=False); llm.eval([5, 6, 7])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "GGML_ASSERT(buffer) failed" in proc.stderr, proc.stderr[-2000:]
    assert _exact(_runs(tiny_checkpoint, bpe, tmp_path, pattern, exact=True))


def test_trap2_layer0_without_attention_does_not_load(tiny_checkpoint, bpe, tmp_path):
    export_gguf(tiny_checkpoint("llama", "attn0"), tmp_path / "naive.gguf", "f32", exact=False)
    prompt, windows = token_data(bpe)
    with pytest.raises(LlamaLoadError, match="llama.cpp cannot load"):
        llamacpp_run(tmp_path / "naive.gguf", prompt, windows, 4)
    assert _exact(_runs(tiny_checkpoint, bpe, tmp_path, "attn0", exact=True))
