"""The GGUF file itself (no llama.cpp needed): the layout of deci blocks, the metadata, the stand-ins, the tokenizer,
the output types, and one-line errors on bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from gguf import GGUFReader

from sprint.errors import SprintError
from sprint.export.gguf import Block, export_gguf, plan_blocks
from sprint.pipeline.cli import main

from export_cases import LAYERS, PATTERNS


def labels(pattern: str, exact: bool = True) -> list[str]:
    return [b.label() for b in plan_blocks(LAYERS, PATTERNS[pattern], exact)]


def test_blocks_pack_kept_sublayers_and_stand_in_only_where_llama_cpp_needs_it():
    assert labels("dense") == ["a0+m0", "a1+m1", "a2+m2", "a3+m3"]
    assert labels("attn") == ["a0+m0", "-+m1", "a2+m2", "a3+m3"]  # attention-free block: deci computes it right
    assert labels("mlp") == ["a0+m0", "a1+pad", "a2+m2", "a3+m3"]  # two attentions in a row: a zero FFN between
    assert labels("both") == ["a0+m0", "a2+m2", "a3+m3"]  # a removed layer disappears
    assert labels("attn0") == ["zero+m0", "a1+m1", "a2+m2", "a3+m3"]  # zero linear attention carries the head size
    assert labels("last-mlp") == ["a0+m0", "a1+m1", "a2+m2", "a3+pad"]
    assert labels("last-both") == ["a0+m0", "a1+m1", "a2+m2"]
    assert labels("mixed") == ["zero+m0", "a1+pad", "a2+m3"]  # attention 2 shares a block with MLP 3
    # the naive one-to-one layout, kept for the trap reproductions
    assert labels("mlp", exact=False) == ["a0+m0", "a1+-", "a2+m2", "a3+m3"]
    assert labels("attn0", exact=False) == ["-+m0", "a1+m1", "a2+m2", "a3+m3"]


def test_a_model_without_attention_needs_no_stand_in():
    removed = [(i, "attn") for i in range(3)]
    assert plan_blocks(3, removed) == [Block(mlp=0), Block(mlp=1), Block(mlp=2)]
    with pytest.raises(SprintError, match="nothing to export"):
        plan_blocks(2, [(i, k) for i in range(2) for k in ("attn", "mlp")])


def _fields(path):
    reader = GGUFReader(str(path))
    return reader, {k: f.contents() for k, f in reader.fields.items()}


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_metadata_tensors_and_stand_ins(tiny_checkpoint, tmp_path, family, bpe):
    out = tmp_path / "m.gguf"
    summary = export_gguf(tiny_checkpoint(family, "mixed"), out, "f32")
    assert summary["blocks"] == ["zero+m0", "a1+pad", "a2+m3"] and out.is_file()
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed
    reader, kv = _fields(out)
    assert kv["general.architecture"] == "deci" and kv["deci.block_count"] == 3
    assert list(kv["deci.attention.head_count"]) == [4, 4, 4]
    assert list(kv["deci.attention.head_count_kv"]) == [0, 2, 2]  # block 0: a "linear attention"
    assert list(kv["deci.feed_forward_length"]) == [64, 1, 64]
    assert kv["deci.attention.key_length"] == 8 and kv["deci.rope.dimension_count"] == 8
    assert kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "gpt-2"
    assert len(kv["tokenizer.ggml.tokens"]) == len(bpe) and kv["tokenizer.ggml.merges"]
    assert list(kv["sprint.blocks"]) == summary["blocks"]
    tensors = {t.name: t for t in reader.tensors}
    assert not np.any(tensors["blk.0.attn_output.weight"].data) and np.all(tensors["blk.0.attn_norm.weight"].data == 1)
    for name in ("ffn_gate", "ffn_up", "ffn_down"):
        assert not np.any(tensors[f"blk.1.{name}.weight"].data)
    assert "blk.0.attn_q.weight" not in tensors
    assert ("blk.1.attn_q.bias" in tensors) == (family == "qwen2")  # Qwen2's q/k/v biases are carried
    assert "output.weight" in tensors  # the tiny models do not tie embeddings


def test_queries_and_keys_are_interleaved_for_llama_cpp_rope(tiny_checkpoint, tmp_path):
    from safetensors.numpy import load_file

    ckpt = tiny_checkpoint("llama", "dense")
    export_gguf(ckpt, tmp_path / "d.gguf", "f32")
    reader, _ = _fields(tmp_path / "d.gguf")
    q = {t.name: t for t in reader.tensors}["blk.0.attn_q.weight"].data.reshape(4, 8, 32)
    hf = load_file(ckpt / "model.safetensors")["model.layers.0.self_attn.q_proj.weight"].reshape(4, 8, 32)
    assert np.array_equal(q[:, 0::2], hf[:, :4]) and np.array_equal(q[:, 1::2], hf[:, 4:])


@pytest.mark.parametrize("outtype, kind", [("f32", "F32"), ("f16", "F16"), ("bf16", "BF16"), ("q8_0", "Q8_0")])
def test_output_types(tiny_checkpoint, tmp_path, outtype, kind):
    out = tmp_path / f"{outtype}.gguf"
    export_gguf(tiny_checkpoint("llama", "mlp"), out, outtype)
    tensors = {t.name: t.tensor_type.name for t in GGUFReader(str(out)).tensors}
    assert tensors["blk.0.attn_q.weight"] == kind and tensors["token_embd.weight"] == kind
    assert tensors["blk.0.attn_norm.weight"] == "F32"  # norms stay f32
    # the stand-in FFN's down projection has rows of 1 element: not a whole q8_0 block, so f16
    assert tensors["blk.1.ffn_down.weight"] == ("F16" if outtype == "q8_0" else kind)


def test_bad_input_is_one_line_naming_the_file_or_value(tiny_checkpoint, tmp_path, capsys):
    ckpt = tiny_checkpoint("llama", "mlp")
    cases = [
        ([str(tmp_path), str(tmp_path / "x.gguf")], "is not a model checkpoint: it has no config.json"),
        ([str(ckpt), str(tmp_path / "x.gguf"), "--outtype", "q4_k"], "--outtype 'q4_k': expected one of"),
        ([str(tmp_path / "missing"), str(tmp_path / "x.gguf")], "no such checkpoint folder"),
        (["--format", "onnx", str(ckpt), str(tmp_path / "x.gguf")], "--format 'onnx'"),
        ([str(ckpt)], "expected CHECKPOINT OUT.gguf"),
    ]
    for argv, message in cases:
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x.gguf").exists()


def _edit_config(src, dst, **changes):
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_unsupported_families_and_shapes_are_refused(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("llama", "dense")
    with pytest.raises(SprintError, match=r"config.json: model_type 'qwen3' cannot be exported exactly: .*q_norm"):
        export_gguf(_edit_config(ckpt, tmp_path / "q3", model_type="qwen3"), tmp_path / "x.gguf")
    with pytest.raises(SprintError, match=r"config.json: model_type 'gpt2' is not supported .*llama, mistral, qwen2"):
        export_gguf(_edit_config(ckpt, tmp_path / "g", model_type="gpt2"), tmp_path / "x.gguf")
    with pytest.raises(SprintError, match="sliced checkpoint"):
        export_gguf(_edit_config(ckpt, tmp_path / "s", sprint_shortcuts=True), tmp_path / "x.gguf")
    with pytest.raises(SprintError, match="rope_type 'yarn'"):
        export_gguf(_edit_config(ckpt, tmp_path / "r", rope_parameters={"rope_type": "yarn", "rope_theta": 1e4}),
                    tmp_path / "x.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*.tmp"))


def test_a_tokenizer_llama_cpp_cannot_reproduce_is_refused(tmp_path):
    from sprint.model.tiny import save_tiny_model

    ckpt = save_tiny_model(tmp_path / "word", "llama", 2)  # the word-level tokenizer
    with pytest.raises(SprintError, match=r"tokenizer.json: a WordLevel tokenizer .* byte-level BPE tokenizers only"):
        export_gguf(ckpt, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
