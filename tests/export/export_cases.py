"""The tiny models' removal patterns, families and held-out text shared by the export tests (a module of its own:
``conftest`` is a name two folders of this suite use)."""

from __future__ import annotations

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
# 320-token BPE covers it with merges.
_WORDS = ("the river city north bridge old market light stone harbour winter song people road tower garden "
          "early summer built small great first long three seven record 1889 2024 year's isn't they're").split()


def _lines(n: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14))) + rng.choice([".", ",", " !", "?"])
            for _ in range(n)]


TRAIN_TEXT = _lines(400, 0)
HELD_OUT = " ".join(_lines(120, 1))


def token_data(tokenizer, prompt_len: int = 24, window: int = 64, windows: int = 4):
    """(prompt ids, perplexity windows) from the held-out text."""
    ids = tokenizer(HELD_OUT, add_special_tokens=False)["input_ids"]
    assert len(ids) >= prompt_len + window * windows, len(ids)
    return ids[:prompt_len], [ids[prompt_len + i * window: prompt_len + (i + 1) * window] for i in range(windows)]
