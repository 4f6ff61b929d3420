"""The checkpoint's tokenizer as GGUF tokenizer metadata, so that the exported file runs alone.

llama.cpp re-implements tokenizers: a byte-level BPE (``tokenizer.ggml.model = "gpt2"``) is its token list, merges
and the name of a pre-tokenizer (the regular expressions that split text before BPE) that llama.cpp knows by name.
The name is read off the checkpoint's ``tokenizer.json``: its pre-tokenizer steps are matched against the
configurations whose llama.cpp equivalent is known (:data:`PRE_TOKENIZERS`); any other tokenizer is refused with
one line naming the file and what it has, rather than exported with a tokenizer that splits text differently.
tests/export checks llama.cpp's tokenization of sample text against the Hugging Face tokenizer's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sprint.errors import SprintError

# Split regexes of Hugging Face tokenizer.json files (Llama-3's and Qwen2's pre-tokenizers), as those files spell them.
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
           r"|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")

# The pre-tokenizer steps of a tokenizer.json (as :func:`_signature` reduces them) -> llama.cpp's pre-tokenizer name.
PRE_TOKENIZERS: dict[tuple, str] = {
    (("ByteLevel", True),): "gpt-2",  # GPT-2's regex inside ByteLevel (SmolLM2 as transformers reads its GGUF)
    (("Digits", True), ("ByteLevel", True)): "smollm",  # SmolLM / SmolLM2 as published
    (("Split", _LLAMA3), ("ByteLevel", False)): "llama-bpe",  # Llama-3
    (("Split", _QWEN2), ("ByteLevel", False)): "qwen2",  # Qwen2 / Qwen2.5
}

# llama.cpp's token types (gguf.TokenType): normal, control (special tokens), user-defined (added, not special),
# unused (ids no token has).
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5


def _signature(pre: dict | None, where: Path) -> tuple:
    steps = (pre.get("pretokenizers") or []) if pre and pre.get("type") == "Sequence" else [pre] if pre else []
    out = []
    for step in steps:
        kind = step.get("type")
        if kind == "ByteLevel":
            if step.get("add_prefix_space"):
                raise SprintError(f"{where}: a ByteLevel pre-tokenizer with add_prefix_space has no llama.cpp "
                                  "equivalent")
            out.append(("ByteLevel", bool(step.get("use_regex", True))))
        elif kind == "Digits":
            out.append(("Digits", bool(step.get("individual_digits"))))
        elif kind == "Split" and step.get("behavior") == "Isolated" and not step.get("invert"):
            out.append(("Split", (step.get("pattern") or {}).get("Regex")))
        else:
            out.append((kind, json.dumps(step, sort_keys=True)))
    return tuple(out)


@dataclass
class Vocab:
    """What the GGUF says of the tokenizer."""

    pre: str
    tokens: list[str]
    types: list[int]
    merges: list[str]
    special: dict[str, int]  # bos / eos / unk / pad -> id
    add_bos: bool
    add_eos: bool
    chat_template: str | None

    def write(self, writer) -> None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        writer.add_token_merges(self.merges)
        setters = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "unk": writer.add_unk_token_id,
                   "pad": writer.add_pad_token_id}
        for key, token_id in self.special.items():
            setters[key](token_id)
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(self.add_eos)
        if self.chat_template:
            writer.add_chat_template(self.chat_template)


def read_vocab(folder: Path, vocab_size: int) -> Vocab:
    """The tokenizer of the checkpoint ``folder`` (its tokenizer.json and special tokens), its token list padded to
    the model's ``vocab_size`` rows of embeddings."""
    from transformers import AutoTokenizer

    file = folder / "tokenizer.json"
    if not file.is_file():
        raise SprintError(f"{file} does not exist: the GGUF must carry the tokenizer (a fast tokenizer's "
                          "tokenizer.json)")
    spec: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise SprintError(f"{file}: a {model.get('type')} tokenizer with a "
                          f"{(spec.get('decoder') or {}).get('type')} decoder; the GGUF export supports byte-level "
                          "BPE tokenizers only")
    signature = _signature(spec.get("pre_tokenizer"), file)
    if signature not in PRE_TOKENIZERS:
        raise SprintError(f"{file}: pre-tokenizer {[s[0] for s in signature]} has no known llama.cpp equivalent "
                          f"(known: {', '.join(sorted(set(PRE_TOKENIZERS.values())))})")
    ids: dict[str, int] = dict(model["vocab"])
    kinds = {i: NORMAL for i in ids.values()}
    for added in spec.get("added_tokens") or []:
        ids[added["content"]] = added["id"]
        kinds[added["id"]] = CONTROL if added.get("special") else USER_DEFINED
    size = max(vocab_size, max(ids.values()) + 1)
    if size > vocab_size:
        raise SprintError(f"{file}: token id {size - 1} is beyond the model's vocab_size {vocab_size}")
    tokens, types = [f"[PAD{i}]" for i in range(size)], [UNUSED] * size
    for text, i in ids.items():
        tokens[i], types[i] = text, kinds[i]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]

    tok = AutoTokenizer.from_pretrained(folder)
    special = {key: getattr(tok, f"{key}_token_id") for key in ("bos", "eos", "unk", "pad")}
    special = {k: int(v) for k, v in special.items() if v is not None}
    probe = "a"
    plain = tok(probe, add_special_tokens=False)["input_ids"]
    full = tok(probe)["input_ids"]
    add_bos = "bos" in special and len(full) > len(plain) and full[0] == special["bos"]
    add_eos = "eos" in special and len(full) > len(plain) and full[-1] == special["eos"]
    template = tok.chat_template if isinstance(tok.chat_template, str) else None
    return Vocab(PRE_TOKENIZERS[signature], tokens, types, merges, special, add_bos, add_eos, template)
