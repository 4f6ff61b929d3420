"""Loading models and tokenizers: local folders, hub ids and pruned SPRINT checkpoints, on the right device."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from sprint.model.checkpoint import is_pruned_checkpoint, load_pruned
from sprint.errors import SprintError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible (several GPUs: accelerate's device_map spreads the model), else 'cpu'."""
    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise SprintError(f"--device {device}: no CUDA device is available")
        return device
    if torch.cuda.is_available():
        return "auto" if torch.cuda.device_count() > 1 else "cuda"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """'auto' -> float32 on the CPU (bf16 matmuls are ~4x slower there), bfloat16 on GPUs."""
    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    if dtype not in DTYPES:
        raise SprintError(f"--dtype {dtype!r}: expected one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _check_exists(name: str) -> None:
    looks_local = name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") > 1
    if looks_local and not (Path(name).expanduser() / "config.json").is_file():
        raise SprintError(f"model folder {name} does not exist or has no config.json")


def load_tokenizer(name: str):
    _check_exists(name)
    return AutoTokenizer.from_pretrained(name)


def load_config(name: str):
    _check_exists(name)
    return AutoConfig.from_pretrained(name)


def load_model(name: str, device: str = "auto", dtype: str = "auto", carried_code: bool = False):
    """(model, tokenizer) in eval mode.  ``name``: local HF folder, hub id or pruned checkpoint folder (built with
    the code it carries when ``carried_code``, see :func:`sprint.model.checkpoint.load_pruned`)."""
    _check_exists(name)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, "cuda" if dev == "auto" else dev)
    if is_pruned_checkpoint(name):
        return load_pruned(name, device=dev, dtype=torch_dtype, carried_code=carried_code)
    kwargs = {"dtype": torch_dtype}
    if dev == "auto":
        kwargs["device_map"] = "auto"
    model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    if dev != "auto":
        model.to(dev)
    model.eval()
    return model, AutoTokenizer.from_pretrained(name)
