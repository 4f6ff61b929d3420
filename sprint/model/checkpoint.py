"""Pruned checkpoints: safetensors without the removed sublayers, the tokenizer, our modeling code, pruning.json
(:func:`save_dense`: a dense-shaped model whose weights were zeroed in place, as an ordinary HF folder).

The folder loads with ``sprint.load_pruned(dir)`` and with plain
``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` (the code it trusts is
``modeling_sprint.py``, copied in verbatim from this package).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer

from sprint.errors import SprintError
from sprint.io import atomic_dir
from sprint.layout import point_name
from sprint.model import modeling_sprint
from sprint.model.modeling_sprint import PRUNED_CLASSES, adapter_for, removed_sublayers

RECORD = "pruning.json"


def _removed_prefixes(model) -> tuple[str, ...]:
    ad = adapter_for(model)
    return tuple(
        f"{ad.layers}.{layer}.{name}."
        for layer, kind in removed_sublayers(model)
        for name in (ad.module(kind), ad.norm(kind))
    )


def save_pruned(model, tokenizer, output: str | Path, record: dict) -> Path:
    """Write the pruned checkpoint atomically (temp folder, then one rename)."""
    model_type = model.config.model_type
    cls = PRUNED_CLASSES[model_type]
    prefixes = _removed_prefixes(model)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    config = model.config
    saved = (getattr(config, "architectures", None), getattr(config, "auto_map", None))
    config.architectures = [cls.__name__]
    config.auto_map = {"AutoModelForCausalLM": f"modeling_sprint.{cls.__name__}"}
    try:
        with atomic_dir(output) as tmp:
            _save_weights(model, tmp, state)
            shutil.copyfile(modeling_sprint.__file__, tmp / "modeling_sprint.py")
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    finally:
        config.architectures, config.auto_map = saved
    return Path(output)


def _save_weights(model, folder: Path, state: dict | None) -> None:
    """save_pretrained, or, for a model whose decoder layers are read from its safetensors on demand
    (:mod:`sprint.model.offload`, file store), a tensor-by-tensor copy that never holds the model in memory."""
    offload = getattr(model, "sprint_offload", None)
    if offload is not None and offload.store == "file":
        offload.save(folder, list(state if state is not None else model.state_dict()))
    elif state is None:
        model.save_pretrained(folder)
    else:
        model.save_pretrained(folder, state_dict=state)


def save_dense(model, tokenizer, output: str | Path, record: dict) -> Path:
    """Write a checkpoint that keeps the dense architecture (weights zeroed in place, e.g. Wanda / SparseGPT): an
    ordinary Hugging Face folder, no carried code, plus pruning.json; atomically."""
    with atomic_dir(output) as tmp:
        _save_weights(model, tmp, None)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return Path(output)


def is_pruned_checkpoint(path: str | Path) -> bool:
    return (Path(path) / RECORD).is_file() and (Path(path) / "modeling_sprint.py").is_file()


def load_pruned(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                carried_code: bool = False):
    """(model, tokenizer) of a pruned checkpoint.

    By default it is built with this package's modeling code (no remote code); ``carried_code=True`` loads it
    exactly as a user does, ``AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`` running the
    ``modeling_sprint.py`` the checkpoint carries (what the measured speedup must time).
    """
    path = Path(path)
    if not is_pruned_checkpoint(path):
        raise SprintError(f"{path} is not a SPRINT checkpoint (no {RECORD} / modeling_sprint.py)")
    config = AutoConfig.from_pretrained(path)
    cls = PRUNED_CLASSES.get(config.model_type)
    if cls is None:
        raise SprintError(f"{path}: model_type {config.model_type!r} has no pruned class")
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if carried_code:
        from transformers import AutoModelForCausalLM

        cls, kwargs["trust_remote_code"] = AutoModelForCausalLM, True
    if str(device) == "auto":
        kwargs["device_map"] = "auto"
    model = cls.from_pretrained(path, **kwargs)
    if str(device) != "auto":
        model.to(device)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


def read_record(path: str | Path) -> dict:
    file = Path(path) / RECORD
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise SprintError(f"{file} does not exist") from None
    except json.JSONDecodeError as err:
        raise SprintError(f"{file}: invalid JSON ({err})") from None


def pruning_summary(model: str) -> dict[str, Any]:
    """Method, target, point (:func:`sprint.layout.point_name`) and estimated speedup, pruning seed and source
    model from ``<model>/pruning.json`` (dense if absent)."""
    path = Path(model) / "pruning.json"
    if not path.is_file():
        return {"method": "dense", "target_speedup": 1.0, "point": point_name(1.0), "estimated_speedup": 1.0,
                "prune_seed": None, "source_model": str(model)}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return {"method": record["method"], "target_speedup": record["target_speedup"], "point": record["point"],
                "estimated_speedup": record["estimated_speedup"], "prune_seed": record.get("params", {}).get("seed"),
                "source_model": record["model"]}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise SprintError(f"{path}: not a SPRINT pruning record ({type(err).__name__}: {err})") from None
