"""The sublayer view of a decoder model: 2L residual branches, run one at a time over calibration activations.

Sublayer ``s`` is attention of decoder layer ``s // 2`` when ``s`` is even and its MLP when odd (paper Eq. 1:
f^(1), f^(2), ... alternate MHA and MLP).  Activations ``X`` of the whole calibration set have shape
[n, seq_len, hidden] and live on the CPU (or the model's device for small runs); branches are evaluated in chunks
of ``batch_size`` windows on the device of the layer that owns them, so a model spread over several GPUs with
accelerate's device_map works unchanged.  A model with offloaded decoder layers (``model.sprint_offload``,
:mod:`sprint.model.offload`) runs each sublayer on the offload's device inside ``resident(s)``, which materialises
the sublayer's weights there (without offload it does nothing); weight edits go through :meth:`SublayerView.write_rows`
so that they persist either way.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from sprint.model.modeling_sprint import KINDS, adapter_for, decoder_layers, removed_sublayers, set_removed


def sublayer_index(layer: int, kind: str) -> int:
    return 2 * layer + KINDS.index(kind)


def sublayer_name(s: int) -> tuple[int, str]:
    return s // 2, KINDS[s % 2]


@dataclass
class SublayerView:
    """Runs single sublayers of ``model`` over batched calibration activations (all under inference_mode)."""

    model: nn.Module
    batch_size: int = 8
    _kwargs: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.adapter = adapter_for(self.model)
        self.layers = decoder_layers(self.model)
        self.num_layers = len(self.layers)
        self.num_sublayers = 2 * self.num_layers
        set_removed(self.model, removed_sublayers(self.model))  # patch every layer's forward once
        self.offload = getattr(self.model, "sprint_offload", None)

    # -- plumbing -------------------------------------------------------------------------------------------
    def _module(self, s: int, what: str) -> nn.Module:
        layer, kind = sublayer_name(s)
        name = self.adapter.module(kind) if what == "branch" else self.adapter.norm(kind)
        return getattr(self.layers[layer], name)

    def device_of(self, s: int) -> torch.device:
        if self.offload is not None:
            return self.offload.device
        return next(self._module(s, "branch").parameters()).device

    def module_names(self, s: int) -> tuple[str, str]:
        """Qualified names of sublayer s's branch and norm modules (model.layers.3.mlp, ...)."""
        layer, kind = sublayer_name(s)
        head = f"{self.adapter.layers}.{layer}."
        return head + self.adapter.module(kind), head + self.adapter.norm(kind)

    def resident(self, s: int, write: bool | tuple = False):
        """Context in which sublayer s's weights are on its execution device (offload: materialised there, edits
        kept when ``write``; see :meth:`sprint.model.offload.Offload.resident`); without offload, nothing happens."""
        if self.offload is None:
            return contextlib.nullcontext()
        return self.offload.resident(self.module_names(s), write)

    def write_rows(self, layer: int, rows: torch.Tensor, weight: torch.Tensor) -> None:
        """Write ``weight`` into rows ``rows`` of MLP ``layer``'s output projection (kept across offloading)."""
        if self.offload is None:
            w = self.down_proj(layer).weight
            with torch.no_grad():
                w[rows.to(w.device)] = weight.to(dtype=w.dtype, device=w.device)
            return
        s = sublayer_index(layer, "mlp")
        name = f"{self.module_names(s)[0]}.{self.adapter.down_proj}.weight"
        with torch.inference_mode(), self.resident(s, write=(name,)):
            w = self.down_proj(layer).weight
            w[rows.to(w.device)] = weight.to(dtype=w.dtype, device=w.device)

    def chunks(self, n: int) -> Iterator[slice]:
        for i in range(0, n, self.batch_size):
            yield slice(i, min(i + self.batch_size, n))

    def layer_kwargs(self, layer: int, batch: int, seq_len: int, device: torch.device) -> dict:
        """The keyword arguments the model passes to decoder layer ``layer`` (mask, rotary embeddings, ...).

        Captured from the model's own forward (with every layer temporarily skipped, so it costs one embedding
        lookup), so masks and position embeddings are exactly what the family computes.
        """
        key = (batch, seq_len)
        if key not in self._kwargs:
            captured: dict[int, dict] = {}
            saved = [dict(layer.sprint_skip) for layer in self.layers]
            hooks = []
            for i, lay in enumerate(self.layers):
                lay.sprint_skip = {k: True for k in KINDS}

                def hook(module, args, kwargs, i=i):
                    captured[i] = {k: v for k, v in kwargs.items() if k != "hidden_states"}

                hooks.append(lay.register_forward_pre_hook(hook, with_kwargs=True))
            try:
                ids = torch.zeros(batch, seq_len, dtype=torch.long, device=self.model.get_input_embeddings().weight.device)
                base = getattr(self.model, self.model.base_model_prefix)
                base(input_ids=ids, use_cache=False)
            finally:
                for h in hooks:
                    h.remove()
                for lay, skip in zip(self.layers, saved):
                    lay.sprint_skip = skip
            self._kwargs[key] = captured
        return {k: _to(v, device) for k, v in self._kwargs[key][layer].items()}

    # -- single sublayers -------------------------------------------------------------------------------------
    def branch_chunk(self, s: int, x: torch.Tensor) -> torch.Tensor:
        """f_s(x) for one chunk x [b, T, H] already on the sublayer's device."""
        layer, kind = sublayer_name(s)
        with self.resident(s):
            h = self._module(s, "norm")(x)
            if kind == "mlp":
                return self._module(s, "branch")(h)
            kw = self.layer_kwargs(layer, x.shape[0], x.shape[1], x.device)
            kw["use_cache"] = False  # the captured cache argument is None already (the capture ran without a cache)
            return self._module(s, "branch")(hidden_states=h, **kw)[0]

    def mlp_hidden_chunk(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Z = h(norm(x)): the input of MLP ``layer``'s output projection for one chunk, [b, T, intermediate]."""
        s = sublayer_index(layer, "mlp")
        with self.resident(s):
            return self.adapter.mlp_hidden(self._module(s, "branch"), self._module(s, "norm")(x))

    def down_proj(self, layer: int) -> nn.Linear:
        return getattr(getattr(self.layers[layer], self.adapter.mlp), self.adapter.down_proj)

    @torch.inference_mode()
    def apply(self, s: int, X: torch.Tensor) -> torch.Tensor:
        """X + f_s(X) over the whole calibration set (a new tensor; X is not modified)."""
        out = torch.empty_like(X)
        dev = self.device_of(s)
        with self.resident(s):
            for c in self.chunks(X.shape[0]):
                x = X[c].to(dev)
                out[c] = (x + self.branch_chunk(s, x)).to(out.device)
        return out

    @torch.inference_mode()
    def embed(self, input_ids: torch.Tensor, store_device: torch.device | str = "cpu") -> torch.Tensor:
        emb = self.model.get_input_embeddings()
        parts = [emb(input_ids[c].to(emb.weight.device)).to(store_device) for c in self.chunks(input_ids.shape[0])]
        if self.offload is not None:
            self.offload.trim()  # a mapped embedding table's touched pages leave RSS (sprint.model.offload)
        return torch.cat(parts)

    @torch.inference_mode()
    def nll(self, X: torch.Tensor, input_ids: torch.Tensor) -> float:
        """Mean next-token negative log-likelihood of the final hidden states X (final norm + LM head)."""
        norm, head = self.model.get_submodule(self.adapter.final_norm), self.model.get_output_embeddings()
        total, count = 0.0, 0
        norm_device = next(norm.parameters()).device
        for c in self.chunks(X.shape[0]):
            logits = head(norm(X[c].to(norm_device)).to(head.weight.device))
            ids = input_ids[c].to(logits.device)
            loss = nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1), reduction="sum"
            )
            total += loss.item()
            count += ids[:, 1:].numel()
        if self.offload is not None:
            self.offload.trim()
        return total / count


def _to(v, device):
    if isinstance(v, torch.Tensor):
        return v.to(device)
    if isinstance(v, tuple):
        return tuple(_to(t, device) for t in v)
    return v


class SpillStore:
    """Named tensors held in host memory or, with a ``directory``, in files on local disk (issue 26).

    A spilled tensor is written once as its raw bytes and read back whole into a fresh tensor when asked for, so at
    most the tensors in use are resident; the bytes are exactly those written (no number changes).  Plain reads and
    writes rather than memory maps: pages of a mapped file that were read count in the process's RSS and in a Slurm
    job's cgroup until the kernel evicts them, while a read copy is freed as soon as it is dropped.  The page cache
    is told to drop each file after it is written and read (``posix_fadvise``), so the spill costs no host memory.
    """

    def __init__(self, directory: str | os.PathLike | None = None, prefix: str = "spill"):
        self.directory = None
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self.directory = Path(tempfile.mkdtemp(prefix=f"sprint-{prefix}-", dir=directory))
            # removed when the store is collected or the interpreter exits (a kill -9 leaves it: $TMPDIR's job)
            weakref.finalize(self, shutil.rmtree, str(self.directory), True)
        self.memory: dict = {}
        self.meta: dict = {}  # key -> (file, dtype, shape)
        self.bytes_written = 0
        self.bytes_read = 0

    @property
    def on_disk(self) -> bool:
        return self.directory is not None

    def __contains__(self, key) -> bool:
        return key in self.memory or key in self.meta

    def __len__(self) -> int:
        return len(self.memory) + len(self.meta)

    def keys(self) -> list:
        return list(self.memory) + list(self.meta)

    def put(self, key, tensor: torch.Tensor) -> None:
        self.pop(key)
        if not self.on_disk:
            self.memory[key] = tensor
            return
        t = tensor.detach().contiguous().cpu()
        path = self.directory / f"{len(self.meta)}-{abs(hash(key))}.bin"
        with open(path, "wb") as fh:
            t.view(torch.uint8).numpy().tofile(fh) if t.numel() else None
            fh.flush()
            _drop_cache(fh.fileno())
        self.meta[key] = (path, t.dtype, tuple(t.shape))
        self.bytes_written += t.numel() * t.element_size()

    def get(self, key) -> torch.Tensor:
        if key in self.memory:
            return self.memory[key]
        path, dtype, shape = self.meta[key]
        with open(path, "rb") as fh:
            raw = np.fromfile(fh, dtype=np.uint8)
            _drop_cache(fh.fileno())
        self.bytes_read += raw.nbytes
        return torch.from_numpy(raw).view(dtype).reshape(shape)

    def pop(self, key, default=None):
        if key in self.memory:
            return self.memory.pop(key)
        if key in self.meta:
            path, _, _ = self.meta.pop(key)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return default

    def nbytes(self) -> int:
        """Bytes resident in host memory (spilled tensors: none)."""
        return sum(t.numel() * t.element_size() for t in self.memory.values())

    def disk_bytes(self) -> int:
        return sum(math.prod(shape) * torch.empty(0, dtype=dtype).element_size() for _, dtype, shape in self.meta.values())

    def close(self) -> None:
        self.memory.clear()
        self.meta.clear()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


def _drop_cache(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


class CheckpointStore:
    """Activation checkpoints (paper Sec. 3.4): the current model's input to sublayer p, at α uniform positions.

    Position 0 (the embeddings) is always a checkpoint and never goes stale.  Removing sublayer r (and tuning an
    MLP above it) leaves the checkpoints at positions <= r valid; the others are refreshed by the next walk.
    ``spill``: a folder on local disk where the checkpoints other than position 0 are kept (:class:`SpillStore`),
    when they do not fit the host budget.
    """

    def __init__(self, num_sublayers: int, alpha: int, embeddings: torch.Tensor, dtype: torch.dtype | None = None,
                 spill: str | os.PathLike | None = None):
        alpha = max(1, min(alpha, num_sublayers))
        self.positions = sorted({round(k * num_sublayers / alpha) for k in range(alpha)})
        self.dtype = dtype or embeddings.dtype
        self.embeddings = embeddings
        self.store = SpillStore(spill, "checkpoints")

    @property
    def data(self) -> dict[int, torch.Tensor]:
        """Position -> activations (spilled ones are read back: for inspection and tests)."""
        return {0: self.embeddings, **{p: self.store.get(p) for p in self.store.keys()}}

    def held(self) -> list[int]:
        return [0, *self.store.keys()]

    def start_for(self, s: int) -> tuple[int, torch.Tensor]:
        p = max(q for q in self.held() if q <= s)
        X = self.embeddings if p == 0 else self.store.get(p)
        return p, X.to(self.embeddings.dtype)

    def offer(self, p: int, X: torch.Tensor) -> None:
        if p in self.positions and p not in self.held():
            self.store.put(p, X.to(self.dtype, copy=True) if X.dtype != self.dtype else X)

    def invalidate_above(self, r: int) -> None:
        for p in [q for q in self.store.keys() if q > r]:
            self.store.pop(p)

    def nbytes(self) -> int:
        """Host bytes held (the embeddings included)."""
        return self.embeddings.numel() * self.embeddings.element_size() + self.store.nbytes()
