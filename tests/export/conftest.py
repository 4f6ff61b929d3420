"""Tiny pruned checkpoints of every family and removal pattern, with a byte-level BPE tokenizer (so their GGUFs run
alone), for the GGUF export's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from sprint.model.tiny import bpe_tokenizer, tiny_model

LAYERS = 4
# Removal pattern -> removed (layer, kind) sublayers of a 4-layer model.
PATTERNS = {
    "dense": [],
    "attn": [(1, "attn")],  # attention only
    "mlp": [(1, "mlp")],  # MLP only: attention kept without its FFN (llama.cpp's trap 1)
    "both": [(1, "attn"), (1, "mlp")],  # a whole layer
    "attn0": [(0, "attn")],  # layer 0's attention (llama.cpp's trap 2)
    "last-attn": [(LAYERS - 1, "attn")],
    "last-mlp": [(LAYERS - 1, "mlp")],  # the model ends on an attention
    "last-both": [(LAYERS - 1, "attn"), (LAYERS - 1, "mlp")],
    "mixed": [(0, "attn"), (1, "mlp"), (2, "mlp"), (3, "attn")],  # SPRINT-like: two attentions in a row
}
FAMILIES = ("llama", "mistral", "qwen2")

# Held-out text for the tokenizer and the perplexity windows: sentences of a small closed vocabulary, so that a
# 512-token BPE covers it with merges.
_WORDS = ("the river city north bridge old market light stone harbour winter song people road tower garden "
          "early summer built small great first long three seven record 1889 2024 year's isn't they're").split()


def _lines(n: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14))) + rng.choice([".", ",", " !", "?"])
            for _ in range(n)]


TRAIN_TEXT = _lines(400, 0)
HELD_OUT = " ".join(_lines(120, 1))


@pytest.fixture(scope="session")
def bpe():
    return bpe_tokenizer(TRAIN_TEXT, vocab=320)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, bpe):
    """Factory: (family, pattern) -> a saved checkpoint folder (a plain HF folder for "dense", else a SPRINT one)."""
    from sprint.model.checkpoint import save_pruned
    from sprint.model.modeling_sprint import set_removed

    root = tmp_path_factory.mktemp("export-ckpt")
    made: dict[tuple[str, str], Path] = {}

    def make(family: str, pattern: str) -> Path:
        key = (family, pattern)
        if key not in made:
            model = tiny_model(family, LAYERS, vocab_size=len(bpe), pad_token_id=bpe.pad_token_id,
                               bos_token_id=bpe.bos_token_id, eos_token_id=bpe.eos_token_id)
            out = root / f"{family}-{pattern}"
            if pattern == "dense":
                model.save_pretrained(out)
                bpe.save_pretrained(out)
            else:
                set_removed(model, PATTERNS[pattern])
                save_pruned(model, bpe, out, {"method": "test", "target_speedup": 1.2, "estimated_speedup": 1.2, "point": "x1.2",
                                              "model": f"tiny-{family}",
                                              "removed": [{"layer": i, "kind": k} for i, k in PATTERNS[pattern]]})
            made[key] = out
        return made[key]

    return make


def token_data(tokenizer, prompt_len: int = 24, window: int = 64, windows: int = 4):
    """(prompt ids, perplexity windows) from the held-out text."""
    ids = tokenizer(HELD_OUT, add_special_tokens=False)["input_ids"]
    assert len(ids) >= prompt_len + window * windows, len(ids)
    return ids[:prompt_len], [ids[prompt_len + i * window: prompt_len + (i + 1) * window] for i in range(windows)]
