"""A pruned (or dense) checkpoint as a GGUF file of llama.cpp's ``deci`` architecture, written with gguf-py.

llama.cpp's ``deci`` (NVIDIA's Nemotron-NAS) takes per-layer arrays: ``deci.attention.head_count`` (0: no
attention), ``deci.attention.head_count_kv`` (0 with heads > 0: a "linear attention", a lone output projection)
and ``deci.feed_forward_length`` (0: no FFN).  That is a sublayer-pruned decoder, but its graph (llama.cpp's
src/models/deci.cpp, as vendored by llama-cpp-python 0.3.36) does not compute two of the patterns as the metadata
says; tests/export/test_traps.py reproduces both on tiny models:

1. **Attention kept, FFN removed.**  A layer with ``n_ff == 0`` leaves the loop before its output becomes the next
   layer's input: the attention's output and residual are dropped, as if the whole layer were removed (and on the
   last layer the selection of the output rows is lost as well).
2. **Layer 0 without attention.**  The head size is ``n_embd / head_count[0]`` (``attention.key_length`` is only
   read when ``head_count[0] > 0``): 0 there makes every later attention's tensors the wrong shape and the file
   fails to load.

The exact export (:func:`plan_blocks`) therefore does not map decoder layers one to one.  It walks the kept
sublayers in order and packs them into deci blocks of (attention, FFN): an attention followed by an FFN share a
block even when they come from different decoder layers (the removed sublayers between them are identities, and
every sublayer keeps its own input norm), a lone FFN is an attention-free block, and a fully removed layer
disappears.  Only two stand-ins remain, each computing exactly zero:

- an attention with no FFN after it (two attentions in a row, or the last sublayer) gets an FFN of width 1 whose
  weights are all zero (3 x hidden parameters, kept f32/f16; it adds one RMSNorm and three tiny matrix products);
- when the first block has no attention, it gets a zero "linear attention" (one hidden x hidden zero matrix) so
  that head_count[0] > 0 and the head size is read from ``attention.key_length``.

The GGUF also records ``sprint.blocks``: what each deci block holds ("a3+m5", "a7+pad", "zero+m0").
Queries and keys are permuted from Hugging Face's half-split rotary layout to llama.cpp's interleaved pairs (deci
uses llama.cpp's "normal" RoPE).  Qwen3 is refused: deci has no per-head q/k RMSNorm.  The file is written to a
temporary name beside ``output`` and renamed once complete.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sprint.errors import SprintError
from sprint.model.checkpoint import RECORD, read_record
from sprint.model.modeling_sprint import ADAPTERS, KINDS, normalize_removed

log = logging.getLogger("sprint")

ARCH = "deci"
FAMILIES = ("llama", "mistral", "qwen2")  # model_type values exported; qwen3 is refused with the reason
OUTTYPES = ("f32", "f16", "bf16", "q8_0")
PAD_FFN = 1  # width of the zero stand-in FFN


@dataclass(frozen=True)
class Block:
    """One deci block: the decoder layer its attention / MLP come from (None: none), or a zero stand-in."""

    attn: int | None = None
    mlp: int | None = None
    zero_attn: bool = False  # zero linear attention (head size carrier of block 0)
    zero_mlp: bool = False  # width-1 zero FFN (keeps the attention's output on llama.cpp's residual path)

    def label(self) -> str:
        a = "zero" if self.zero_attn else "-" if self.attn is None else f"a{self.attn}"
        m = "pad" if self.zero_mlp else "-" if self.mlp is None else f"m{self.mlp}"
        return f"{a}+{m}"


def plan_blocks(num_layers: int, removed, exact: bool = True) -> list[Block]:
    """The deci blocks of a model of ``num_layers`` decoder layers without the ``removed`` (layer, kind) sublayers.

    ``exact=False`` is the naive one-to-one mapping (layer i -> block i, removed sublayers as 0 heads / 0 FFN
    width) that llama.cpp mishandles; kept for the reproductions of the traps."""
    gone = set(normalize_removed(removed))
    if not exact:
        return [Block(None if (i, "attn") in gone else i, None if (i, "mlp") in gone else i)
                for i in range(num_layers)]
    blocks: list[Block] = []
    waiting: int | None = None  # an attention whose block has no FFN yet
    for layer in range(num_layers):
        for kind in KINDS:
            if (layer, kind) in gone:
                continue
            if kind == "attn":
                if waiting is not None:
                    blocks.append(Block(attn=waiting, zero_mlp=True))
                waiting = layer
            else:
                blocks.append(Block(attn=waiting, mlp=layer))
                waiting = None
    if waiting is not None:
        blocks.append(Block(attn=waiting, zero_mlp=True))
    if not blocks:
        raise SprintError("every sublayer of the model is removed: there is nothing to export")
    if blocks[0].attn is None and any(b.attn is not None for b in blocks):
        blocks[0] = replace(blocks[0], zero_attn=True)
    return blocks


# ------------------------------------------------------------------------------------------------ the checkpoint


@dataclass
class Source:
    """A checkpoint folder as the export reads it: config, removed sublayers, a lazy reader of its tensors."""

    path: Path
    config: dict[str, Any]
    removed: list[tuple[int, str]]
    record: dict[str, Any] | None
    files: dict[str, Path] = field(default_factory=dict)  # tensor name -> safetensors file

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def hidden(self) -> int:
        return int(self.config.get("sprint_residual_width") or self.config["hidden_size"])

    @property
    def head_dim(self) -> int:
        return int(self.config.get("head_dim") or self.config["hidden_size"] // self.config["num_attention_heads"])

    def has(self, name: str) -> bool:
        return name in self.files

    def tensor(self, name: str) -> np.ndarray:
        """A tensor as float32 numpy (bf16 / f16 stored tensors are widened exactly)."""
        from safetensors import safe_open

        if name not in self.files:
            raise SprintError(f"{self.path}: tensor {name} is missing from the checkpoint's safetensors")
        with safe_open(self.files[name], framework="pt") as fh:
            return fh.get_tensor(name).float().numpy()


def _local_folder(path: str | os.PathLike) -> Path:
    """``path`` itself, or for a hub id ("owner/name") that is no local path, its files in the Hugging Face cache
    (config, tokenizer and safetensors only)."""
    text = str(path)
    if Path(text).exists() or text.count("/") != 1 or text.startswith((".", "/", "~")):
        return Path(text)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.jinja"]))
    except Exception as err:  # offline, gated, no such repository: one line
        raise SprintError(f"{text}: no such folder, and not a hub model that can be fetched "
                          f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None


def read_source(path: str | os.PathLike) -> Source:
    """Check and open a checkpoint folder: a SPRINT checkpoint (``pruning.json`` + ``modeling_sprint.py``) or a plain
    Hugging Face folder (the dense model, or a weights method's dense-shaped one) of a supported family, or the hub
    id of one."""
    path = _local_folder(path)
    config_file = path / "config.json"
    if not path.is_dir():
        raise SprintError(f"{path}: no such checkpoint folder")
    if not config_file.is_file():
        raise SprintError(f"{path} is not a model checkpoint: it has no config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SprintError(f"{config_file}: invalid JSON ({err})") from None
    model_type = config.get("model_type")
    if model_type == "qwen3":
        raise SprintError(f"{config_file}: model_type 'qwen3' cannot be exported exactly: llama.cpp's deci graph has "
                          "no per-head RMSNorm of queries and keys (Qwen3's q_norm / k_norm)")
    if model_type not in FAMILIES:
        raise SprintError(f"{config_file}: model_type {model_type!r} is not supported by the GGUF export "
                          f"(supported: {', '.join(FAMILIES)})")
    if config.get("sprint_shortcuts") or config.get("sprint_residual_width"):
        raise SprintError(f"{config_file}: a sliced checkpoint (SliceGPT: a square matrix on every residual "
                          "connection) has no llama.cpp deci equivalent")
    if config.get("hidden_act", "silu") != "silu":
        raise SprintError(f"{config_file}: hidden_act {config.get('hidden_act')!r}: llama.cpp's deci FFN is SiLU-gated")
    _rope(config, config_file)
    files = _tensor_files(path)
    record = read_record(path) if (path / RECORD).is_file() else None
    removed = normalize_removed(config.get("sprint_removed") or [])
    return Source(path, config, removed, record, files)


def _tensor_files(path: Path) -> dict[str, Path]:
    from safetensors import safe_open

    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: path / file for name, file in weight_map.items()}
    single = path / "model.safetensors"
    if not single.is_file():
        raise SprintError(f"{path} is not a model checkpoint: no model.safetensors (or its index)")
    with safe_open(single, framework="pt") as fh:
        return {name: single for name in fh.keys()}


def _rope(config: dict, config_file: Path) -> tuple[float, float | None]:
    """(rope base, linear scaling factor or None); other RoPE scalings are refused."""
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind == "default":
        return float(theta), None
    if kind == "linear":
        return float(theta), float(params.get("factor") or scaling["factor"])
    raise SprintError(f"{config_file}: rope_type {kind!r} is not supported by the GGUF export (default, linear)")


# ------------------------------------------------------------------------------------------------ the tensors


def _interleave_rope(w: np.ndarray, heads: int, head_dim: int) -> np.ndarray:
    """Rows of a query / key projection (or bias) from Hugging Face's rotary layout, where element j of a head
    rotates with j + head_dim/2, to llama.cpp's "normal" RoPE, where 2j rotates with 2j + 1: row 2j <- j,
    row 2j + 1 <- j + head_dim/2, within each head.  Applied to queries and keys alike, so q.k is unchanged."""
    rest = w.shape[1:]
    return np.ascontiguousarray(w.reshape(heads, 2, head_dim // 2, *rest).swapaxes(1, 2).reshape(w.shape))


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]  # numpy order: (rows, columns)
    make: Callable[[], np.ndarray]  # float32 values


def _tensors(src: Source, blocks: list[Block]) -> tuple[list[_Tensor], dict[str, list[int]]]:
    """Every GGUF tensor of the deci model (lazily made) and the per-block head counts and FFN widths."""
    from gguf import MODEL_TENSOR, TENSOR_NAMES

    ad = ADAPTERS[src.config["model_type"]]
    hd, d = src.head_dim, src.hidden
    out: list[_Tensor] = []
    heads, heads_kv, widths = [], [], []

    def name(kind: MODEL_TENSOR, bid: int | None = None, suffix: str = "weight") -> str:
        return TENSOR_NAMES[kind].format(bid=bid) + "." + suffix

    def shape_of(hf: str) -> tuple[int, ...]:
        from safetensors import safe_open

        with safe_open(src.files[hf], framework="pt") as fh:
            return tuple(fh.get_slice(hf).get_shape())

    def copy(gguf_name: str, hf: str, transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        if not src.has(hf):
            raise SprintError(f"{src.path}: tensor {hf} is missing from the checkpoint's safetensors")
        out.append(_Tensor(gguf_name, shape_of(hf),
                           (lambda: src.tensor(hf)) if transform is None else (lambda: transform(src.tensor(hf)))))

    def const(gguf_name: str, shape: tuple[int, ...], value: float) -> None:
        out.append(_Tensor(gguf_name, shape, lambda: np.full(shape, value, dtype=np.float32)))

    out.append(_Tensor("token_embd.weight", shape_of("model.embed_tokens.weight"),
                       lambda: src.tensor("model.embed_tokens.weight")))
    for n, b in enumerate(blocks):
        if b.attn is not None:
            pre = f"{ad.layers}.{b.attn}.{ad.attn}."
            nq, nkv = shape_of(pre + "q_proj.weight")[0] // hd, shape_of(pre + "k_proj.weight")[0] // hd
            copy(name(MODEL_TENSOR.ATTN_NORM, n), f"{ad.layers}.{b.attn}.{ad.attn_norm}.weight")
            for kind, proj, count in ((MODEL_TENSOR.ATTN_Q, "q_proj", nq), (MODEL_TENSOR.ATTN_K, "k_proj", nkv),
                                      (MODEL_TENSOR.ATTN_V, "v_proj", None)):
                for suffix in ("weight", "bias"):
                    hf = f"{pre}{proj}.{suffix}"
                    if suffix == "bias" and not src.has(hf):
                        continue
                    permute = None if count is None else (lambda w, c=count: _interleave_rope(w, c, hd))
                    copy(name(kind, n, suffix), hf, permute)
            copy(name(MODEL_TENSOR.ATTN_OUT, n), f"{pre}{ad.o_proj}.weight")
            if src.has(f"{pre}{ad.o_proj}.bias"):
                copy(name(MODEL_TENSOR.ATTN_OUT, n, "bias"), f"{pre}{ad.o_proj}.bias")
            heads.append(nq)
            heads_kv.append(nkv)
        elif b.zero_attn:
            const(name(MODEL_TENSOR.ATTN_NORM, n), (d,), 1.0)
            const(name(MODEL_TENSOR.ATTN_OUT, n), (d, d), 0.0)
            heads.append(int(src.config["num_attention_heads"]))
            heads_kv.append(0)
        else:
            heads.append(0)
            heads_kv.append(0)
        if b.mlp is not None:
            pre = f"{ad.layers}.{b.mlp}.{ad.mlp}."
            copy(name(MODEL_TENSOR.FFN_NORM, n), f"{ad.layers}.{b.mlp}.{ad.mlp_norm}.weight")
            for kind, proj in ((MODEL_TENSOR.FFN_GATE, "gate_proj"), (MODEL_TENSOR.FFN_UP, "up_proj"),
                               (MODEL_TENSOR.FFN_DOWN, ad.down_proj)):
                copy(name(kind, n), f"{pre}{proj}.weight")
                if src.has(f"{pre}{proj}.bias"):
                    copy(name(kind, n, "bias"), f"{pre}{proj}.bias")
            widths.append(shape_of(f"{pre}gate_proj.weight")[0])
        elif b.zero_mlp:
            const(name(MODEL_TENSOR.FFN_NORM, n), (d,), 1.0)
            const(name(MODEL_TENSOR.FFN_GATE, n), (PAD_FFN, d), 0.0)
            const(name(MODEL_TENSOR.FFN_UP, n), (PAD_FFN, d), 0.0)
            const(name(MODEL_TENSOR.FFN_DOWN, n), (d, PAD_FFN), 0.0)
            widths.append(PAD_FFN)
        else:
            widths.append(0)
    out.append(_Tensor("output_norm.weight", (d,), lambda: src.tensor(f"{ad.final_norm}.weight")))
    if not src.config.get("tie_word_embeddings", False):
        out.append(_Tensor("output.weight", shape_of("lm_head.weight"), lambda: src.tensor("lm_head.weight")))
    return out, {"head_count": heads, "head_count_kv": heads_kv, "feed_forward_length": widths}


def _storage(shape: tuple[int, ...], outtype: str):
    """The GGML type a tensor of ``shape`` is stored as: 1-D tensors (norms, biases) stay F32, as llama.cpp keeps
    them; a q8_0 tensor whose rows are not whole blocks of 32 (the stand-in FFN's down projection) is F16."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as Q

    if len(shape) == 1 or outtype == "f32":
        return Q.F32
    if outtype == "f16":
        return Q.F16
    if outtype == "bf16":
        return Q.BF16
    block = GGML_QUANT_SIZES[Q.Q8_0][0]
    return Q.Q8_0 if shape[-1] % block == 0 else Q.F16


def _encode(values: np.ndarray, qtype) -> np.ndarray:
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quantize

    if qtype == Q.F32:
        return values.astype(np.float32, copy=False)
    if qtype == Q.F16:
        if np.isfinite(values).all() and np.abs(values).max(initial=0) > 65504:
            raise SprintError("a weight exceeds float16's range (65504): export with --outtype bf16 or f32")
        return values.astype(np.float16)
    return quantize(values, qtype)


def _nbytes(shape: tuple[int, ...], qtype) -> int:
    from gguf import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[qtype]
    return int(np.prod(shape[:-1], dtype=np.int64)) * (shape[-1] // block) * size


# ------------------------------------------------------------------------------------------------ the file


def export_gguf(checkpoint: str | os.PathLike, output: str | os.PathLike, outtype: str = "f16",
                exact: bool = True) -> dict[str, Any]:
    """Write ``checkpoint`` as a GGUF of llama.cpp's deci architecture at ``output`` (temp file, then one rename).

    ``outtype``: f32, f16, bf16 or q8_0 for the matrices (norms and biases stay f32).  ``exact=False`` writes the
    naive one-to-one layout that llama.cpp computes wrongly (for the trap reproductions only).  Returns a summary:
    blocks, stand-ins, file size, tensor count."""
    from gguf import GGUFWriter, LlamaFileType

    from sprint.export.vocab import read_vocab

    if outtype not in OUTTYPES:
        raise SprintError(f"--outtype {outtype!r}: expected one of {', '.join(OUTTYPES)}")
    src = read_source(checkpoint)
    config_file = src.path / "config.json"
    vocab = read_vocab(src.path, int(src.config["vocab_size"]))
    blocks = plan_blocks(src.num_layers, src.removed, exact=exact)
    tensors, arrays = _tensors(src, blocks)
    base, linear = _rope(src.config, config_file)
    file_type = {"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16,
                 "bf16": LlamaFileType.MOSTLY_BF16, "q8_0": LlamaFileType.MOSTLY_Q8_0}[outtype]
    context = int(src.config.get("max_position_embeddings") or 2048)
    window = src.config.get("sliding_window") if src.config.get("use_sliding_window", True) else None
    if window:  # llama.cpp's deci has no sliding window: within it, full attention is the same computation
        context = min(context, int(window))

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = GGUFWriter(tmp, ARCH)
        writer.add_name(_model_name(src))
        writer.add_type("model")
        writer.add_file_type(int(file_type))
        writer.add_block_count(len(blocks))
        writer.add_context_length(context)
        writer.add_embedding_length(src.hidden)
        writer.add_feed_forward_length(arrays["feed_forward_length"])
        writer.add_head_count(arrays["head_count"])
        writer.add_head_count_kv(arrays["head_count_kv"])
        writer.add_key_length(src.head_dim)
        writer.add_value_length(src.head_dim)
        writer.add_rope_dimension_count(src.head_dim)
        writer.add_rope_freq_base(base)
        if linear is not None:
            from gguf import RopeScalingType

            writer.add_rope_scaling_type(RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(linear)
        writer.add_layer_norm_rms_eps(float(src.config.get("rms_norm_eps", 1e-6)))
        writer.add_vocab_size(int(src.config["vocab_size"]))
        vocab.write(writer)
        writer.add_array("sprint.blocks", [b.label() for b in blocks])
        if src.record is not None:
            writer.add_string("sprint.method", str(src.record.get("method")))
            if src.record.get("target_speedup") is not None:
                writer.add_float32("sprint.target_speedup", float(src.record["target_speedup"]))
        writer.add_string("sprint.layout", "exact" if exact else "naive")

        storage = [_storage(t.shape, outtype) for t in tensors]
        for t, qtype in zip(tensors, storage):
            nbytes = _nbytes(t.shape, qtype)
            writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t, qtype in zip(tensors, storage):
            values = t.make()
            if tuple(values.shape) != t.shape:
                raise SprintError(f"{src.path}: tensor for {t.name} has shape {values.shape}, expected {t.shape}")
            data = _encode(values, qtype)
            writer.write_tensor_data(data.reshape(-1) if data.dtype != np.uint8 else data)
        writer.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    summary = {
        "gguf": str(output), "outtype": outtype, "bytes": output.stat().st_size, "layout": "exact" if exact else "naive",
        "blocks": [b.label() for b in blocks], "decoder_layers": src.num_layers, "tensors": len(tensors),
        "zero_mlp_blocks": sum(b.zero_mlp for b in blocks), "zero_attn_blocks": sum(b.zero_attn for b in blocks),
    }
    log.info("%s -> %s (%s, %d deci blocks from %d layers, %d stand-in FFN, %d stand-in attention, %.1f MB)",
             src.path, output, outtype, len(blocks), src.num_layers, summary["zero_mlp_blocks"],
             summary["zero_attn_blocks"], summary["bytes"] / 1e6)
    return summary


def _model_name(src: Source) -> str:
    name = src.config.get("_name_or_path") or src.path.name
    if src.record is None:
        return str(name)
    point = src.record.get("point") or (f"x{src.record['target_speedup']:g}" if src.record.get("target_speedup")
                                        else "")
    return f"{Path(str(src.record.get('model', name))).name} {src.record.get('method')} {point}".strip()

