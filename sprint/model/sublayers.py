"""The sublayer view of a decoder model: 2L residual branches, run one at a time over calibration activations.

Sublayer ``s`` is attention of decoder layer ``s // 2`` when ``s`` is even and its MLP when odd (paper Eq. 1:
f^(1), f^(2), ... alternate MHA and MLP).  Activations ``X`` of the whole calibration set have shape
[n, seq_len, hidden] and live on the CPU (or the model's device for small runs); branches are evaluated in chunks
of ``batch_size`` windows on the device of the layer that owns them, so a model spread over several GPUs with
accelerate's device_map works unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

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

    # -- plumbing -------------------------------------------------------------------------------------------
    def _module(self, s: int, what: str) -> nn.Module:
        layer, kind = sublayer_name(s)
        name = self.adapter.module(kind) if what == "branch" else self.adapter.norm(kind)
        return getattr(self.layers[layer], name)

    def device_of(self, s: int) -> torch.device:
        return next(self._module(s, "branch").parameters()).device

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
        h = self._module(s, "norm")(x)
        if kind == "mlp":
            return self._module(s, "branch")(h)
        kw = self.layer_kwargs(layer, x.shape[0], x.shape[1], x.device)
        kw["use_cache"] = False  # the captured cache argument is None already (the capture ran without a cache)
        return self._module(s, "branch")(hidden_states=h, **kw)[0]

    def mlp_hidden_chunk(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Z = h(norm(x)): the input of MLP ``layer``'s output projection for one chunk, [b, T, intermediate]."""
        s = sublayer_index(layer, "mlp")
        return self.adapter.mlp_hidden(self._module(s, "branch"), self._module(s, "norm")(x))

    def down_proj(self, layer: int) -> nn.Linear:
        return getattr(getattr(self.layers[layer], self.adapter.mlp), self.adapter.down_proj)

    @torch.inference_mode()
    def apply(self, s: int, X: torch.Tensor) -> torch.Tensor:
        """X + f_s(X) over the whole calibration set (a new tensor; X is not modified)."""
        out = torch.empty_like(X)
        dev = self.device_of(s)
        for c in self.chunks(X.shape[0]):
            x = X[c].to(dev)
            out[c] = (x + self.branch_chunk(s, x)).to(out.device)
        return out

    @torch.inference_mode()
    def embed(self, input_ids: torch.Tensor, store_device: torch.device | str = "cpu") -> torch.Tensor:
        emb = self.model.get_input_embeddings()
        parts = [emb(input_ids[c].to(emb.weight.device)).to(store_device) for c in self.chunks(input_ids.shape[0])]
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
        return total / count


def _to(v, device):
    if isinstance(v, torch.Tensor):
        return v.to(device)
    if isinstance(v, tuple):
        return tuple(_to(t, device) for t in v)
    return v


class CheckpointStore:
    """Activation checkpoints (paper Sec. 3.4): the current model's input to sublayer p, at α uniform positions.

    Position 0 (the embeddings) is always a checkpoint and never goes stale.  Removing sublayer r (and tuning an
    MLP above it) leaves the checkpoints at positions <= r valid; the others are refreshed by the next walk.
    """

    def __init__(self, num_sublayers: int, alpha: int, embeddings: torch.Tensor, dtype: torch.dtype | None = None):
        alpha = max(1, min(alpha, num_sublayers))
        self.positions = sorted({round(k * num_sublayers / alpha) for k in range(alpha)})
        self.dtype = dtype or embeddings.dtype
        self.data: dict[int, torch.Tensor] = {0: embeddings}

    def start_for(self, s: int) -> tuple[int, torch.Tensor]:
        p = max(q for q in self.data if q <= s)
        return p, self.data[p].to(self.data[0].dtype)

    def offer(self, p: int, X: torch.Tensor) -> None:
        if p in self.positions and p not in self.data:
            self.data[p] = X.to(self.dtype, copy=True) if X.dtype != self.dtype else X

    def invalidate_above(self, r: int) -> None:
        for p in [q for q in self.data if q > r]:
            del self.data[p]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.data.values())
