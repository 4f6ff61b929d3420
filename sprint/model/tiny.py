"""Tiny random-weight decoders for tests and the benchmark: one builder, every supported family.

``tiny_model("llama", layers=4)`` is a GQA decoder (hidden 32, MLP 64, 4 query / 2 KV heads, vocabulary 96, fp32,
eval mode, SDPA attention) whose 2-D weights are drawn N(0, 0.2) so that every sublayer matters;
``save_tiny_model(path, ...)`` writes it with a word-level tokenizer (or the one given) as a local HF folder,
atomically.  Sizes are keyword arguments, e.g. ``hidden_size=768`` for a model whose sublayers' times stand out of
``generate``'s per-token overhead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

VOCAB = 96
SIZES = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
             head_dim=8, max_position_embeddings=256)
FAMILIES = {  # family -> (config class, model class) in transformers
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
}


def tiny_model(family: str = "llama", layers: int = 4, seed: int = 0, weight_std: float | None = 0.2, **sizes):
    """A random-weight decoder of ``family`` (``sizes`` override :data:`SIZES`; ``weight_std`` None keeps the
    family's initialisation)."""
    import torch
    import transformers

    config_name, model_name = FAMILIES[family]
    settings = {**SIZES, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, **sizes}
    config = getattr(transformers, config_name)(**settings, num_hidden_layers=layers, tie_word_embeddings=False,
                                                attn_implementation="sdpa")
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config).eval()
    if weight_std is not None:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.normal_(0, weight_std)
    return model


def word_tokenizer(vocab: int = VOCAB):
    """A word-level tokenizer over a fixed vocabulary (<pad> <s> </s> <unk>, w0 w1 ..., a-z): offline, deterministic."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    letters = list("abcdefghijklmnopqrstuvwxyz")
    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(vocab - 4 - len(letters))] + letters
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def bpe_tokenizer(lines, vocab: int = 512):
    """A byte-level BPE tokenizer trained on ``lines`` (<unk> <s> </s> first; </s> pads)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")


def save_tiny_model(path: str | os.PathLike, family: str = "llama", layers: int = 4, seed: int = 0, tokenizer=None,
                    **kwargs) -> Path:
    """Write a tiny model (``kwargs`` as :func:`tiny_model`'s) and its tokenizer (default :func:`word_tokenizer`) to
    ``path``, atomically; an existing folder with a config.json is kept as it is."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    tokenizer = tokenizer if tokenizer is not None else word_tokenizer()
    if "vocab_size" not in kwargs and len(tokenizer) != VOCAB:
        kwargs["vocab_size"] = len(tokenizer)
    if tokenizer.pad_token_id is not None:
        kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tiny_model(family, layers, seed, **kwargs).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, path)
    return path
