"""Calibration sets: n seeded random windows of seq_len tokens, stored as one LongTensor [n, seq_len]."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import torch

from sprint.data.sources import HELDOUT_CORPORA, resolve_mirror, wikitext2_text
from sprint.errors import SprintError
from sprint.io import atomic_write_bytes, atomic_write_json

log = logging.getLogger("sprint")


def sample_windows(ids: torch.Tensor, n: int, seq_len: int, seed: int) -> torch.Tensor:
    """n windows of ``ids`` (1-D) with start offsets drawn uniformly in [0, len - seq_len]: LongTensor [n, seq_len]."""
    if n < 1 or seq_len < 1:
        raise SprintError(f"calibration needs n >= 1 and seq_len >= 1, got n={n}, seq_len={seq_len}")
    if ids.numel() < seq_len + 1:
        raise SprintError(f"calibration text has {ids.numel()} tokens: need at least seq_len + 1 = {seq_len + 1}")
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - seq_len + 1, (n,), generator=gen)
    return torch.stack([ids[s : s + seq_len] for s in starts.tolist()]).long()


def source_ids(tokenizer, source: str, mirror: str | os.PathLike | None) -> tuple[torch.Tensor, str]:
    """The calibration source tokenized once: (1-D LongTensor of its ids, a label naming it).

    ``source`` is "wikitext2" (hub train split; the mirror's validation split when a mirror is configured) or a
    path to a local UTF-8 text file.  A held-out perplexity corpus (:data:`sprint.data.sources.HELDOUT_CORPORA`) is
    refused: its perplexity tells fitting the calibration text apart from language modelling only if no pruning
    ever saw it.
    """
    if source in HELDOUT_CORPORA:
        raise SprintError(f"calibration source {source!r} is a held-out perplexity corpus, never calibrated on "
                          f"(calibrate on 'wikitext2' or a text file of your own)")
    if source == "wikitext2":
        root = resolve_mirror(mirror)
        if root is None:
            text, label = wikitext2_text("train", None), "wikitext2-train (hub)"
        else:
            text, label = wikitext2_text("validation", root), "wikitext2-valid (offline mirror)"
    else:
        path = Path(source)
        if not path.is_file():
            raise SprintError(f"calibration source {source} is neither 'wikitext2' nor an existing text file")
        text, label = path.read_text(encoding="utf-8"), str(path)
    ids = torch.tensor(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"], dtype=torch.long)
    log.info("calibration source %s: %d tokens", label, ids.numel())
    return ids, label


def build_calibration(
    tokenizer, source: str, n: int, seq_len: int, seed: int, mirror: str | os.PathLike | None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Tokenize the source once (:func:`source_ids`) and sample windows: (tokens [n, seq_len], meta)."""
    ids, label = source_ids(tokenizer, source, mirror)
    return sample_windows(ids, n, seq_len, seed), calibration_meta(tokenizer, label, ids, seed)


def calibration_meta(tokenizer, label: str, ids: torch.Tensor, seed: int) -> dict[str, Any]:
    """The sidecar record of windows sampled from ``ids``."""
    return {"source": label, "source_tokens": ids.numel(), "tokenizer": getattr(tokenizer, "name_or_path", ""),
            "seed": seed}


def save_calibration(tokens: torch.Tensor, path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Write the LongTensor (torch.save) and a sidecar ``<path>.json`` with meta, n, seq_len, seed."""
    buf = io.BytesIO()
    torch.save(tokens, buf)
    atomic_write_bytes(path, buf.getvalue())
    n, seq_len = tokens.shape
    atomic_write_json(f"{path}.json", {**meta, "n": n, "seq_len": seq_len, "seed": meta.get("seed")})


def load_calibration(path: str | os.PathLike) -> torch.Tensor:
    """Load and validate a calibration file: a torch.int64 tensor [n >= 1, seq_len >= 2]."""
    path = Path(path)
    if not path.is_file():
        raise SprintError(f"calibration file {path} does not exist")
    try:
        tokens = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        kind = f"{type(err).__module__}.{type(err).__name__}"
        raise SprintError(f"calibration file {path} is not a readable torch file (torch.load: {kind})") from err
    if not isinstance(tokens, torch.Tensor):
        got = type(tokens).__name__
    elif tokens.dtype != torch.int64 or tokens.dim() != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 2:
        got = f"a {tokens.dtype} tensor of shape {list(tokens.shape)}"
    else:
        return tokens
    raise SprintError(f"calibration file {path}: expected a LongTensor [n, seq_len] (n >= 1, seq_len >= 2), got {got}")
