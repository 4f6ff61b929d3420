"""Tiny pruned checkpoints of every family and removal pattern, with a byte-level BPE tokenizer (so their GGUFs run
alone), for the GGUF export's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from sprint.model.tiny import bpe_tokenizer, tiny_model

from export_cases import LAYERS, PATTERNS, TRAIN_TEXT


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
                record = {"method": "test", "target_speedup": 1.2, "estimated_speedup": 1.2, "point": "x1.2",
                          "model": f"tiny-{family}", "removed": [{"layer": i, "kind": k} for i, k in PATTERNS[pattern]]}
                save_pruned(model, bpe, out, record)
            made[key] = out
        return made[key]

    return make
