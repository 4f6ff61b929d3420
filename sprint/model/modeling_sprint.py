"""Sublayer-pruned decoder models: the modeling code every SPRINT checkpoint carries.

A decoder layer holds two *sublayers*, each a residual branch: attention (``x + attn(norm1(x))``) and MLP
(``x + mlp(norm2(x))``).  Removing a sublayer skips its whole branch, input norm included (x_out = x_in), so a
pruned model really does less work.  This file is copied verbatim into each pruned checkpoint and referenced from
its ``config.json`` ``auto_map``: ``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` then
builds the dense architecture, drops the removed sublayers' modules (their weights are not in the checkpoint)
and loads the rest.  It therefore depends on torch and transformers only.

The model-family differences live in ``ADAPTERS`` and nowhere else.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn
from transformers import LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM

KINDS = ("attn", "mlp")


def _gated_mlp_hidden(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Input Z of the MLP's output projection: act(gate(x)) * up(x)   [.., intermediate]."""
    return mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)


@dataclass(frozen=True)
class Adapter:
    """Where a family keeps its decoder layers, sublayers, norms and MLP output projection."""

    causal_lm: type
    layers: str = "model.layers"
    attn: str = "self_attn"
    attn_norm: str = "input_layernorm"
    mlp: str = "mlp"
    mlp_norm: str = "post_attention_layernorm"
    down_proj: str = "down_proj"
    o_proj: str = "o_proj"  # the attention's output projection
    final_norm: str = "model.norm"  # applied to the last layer's output, before the LM head
    mlp_hidden: Callable[[nn.Module, torch.Tensor], torch.Tensor] = _gated_mlp_hidden

    def module(self, kind: str) -> str:
        return self.attn if kind == "attn" else self.mlp

    def out_proj(self, kind: str) -> str:
        """The branch's projection back to the residual stream."""
        return self.o_proj if kind == "attn" else self.down_proj

    def norm(self, kind: str) -> str:
        return self.attn_norm if kind == "attn" else self.mlp_norm


# model_type -> adapter.  Llama covers Llama-2, Llama-3 (GQA) and SmolLM2.
ADAPTERS: dict[str, Adapter] = {
    "llama": Adapter(LlamaForCausalLM),
    "mistral": Adapter(MistralForCausalLM),
    "qwen2": Adapter(Qwen2ForCausalLM),
    "qwen3": Adapter(Qwen3ForCausalLM),
}


class UnsupportedModelError(ValueError):
    user_fixable = True  # printed by sprint's CLI as one line, like sprint.errors.SprintError


def adapter_for(model_or_config) -> Adapter:
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ADAPTERS:
        name = type(model_or_config).__name__
        supported = ", ".join(f"{k} ({a.causal_lm.__name__})" for k, a in ADAPTERS.items())
        raise UnsupportedModelError(
            f"{name} (model_type={model_type!r}) is not supported by SPRINT's sublayer view; supported: {supported}"
        )
    return ADAPTERS[model_type]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    obj = model
    for part in adapter_for(model).layers.split("."):
        obj = getattr(obj, part)
    return obj


def _sublayer_forward(
    self,
    hidden_states: torch.Tensor,
    attention_mask=None,
    position_ids=None,
    use_cache=False,
    position_embeddings=None,
    **kwargs,
) -> torch.Tensor:
    """Decoder-layer forward that skips the residual branch of every removed sublayer.

    The KV cache passes through ``kwargs`` under whichever name the installed transformers uses
    (``past_key_values`` up to 5.23, ``cache`` from 5.24)."""
    ad = self.sprint_adapter
    if not self.sprint_skip["attn"]:
        h = getattr(self, ad.attn_norm)(hidden_states)
        h, _ = getattr(self, ad.attn)(
            hidden_states=h,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            position_embeddings=position_embeddings,
            **kwargs,
        )
        hidden_states = _residual(self, "attn", hidden_states) + h
    if not self.sprint_skip["mlp"]:
        h = getattr(self, ad.mlp)(getattr(self, ad.mlp_norm)(hidden_states))
        hidden_states = _residual(self, "mlp", hidden_states) + h
    return hidden_states


def _residual(layer: nn.Module, kind: str, x: torch.Tensor) -> torch.Tensor:
    """The residual connection around a branch: x, or x times the sublayer's shortcut matrix (a sliced model: the
    residual stream changes basis at every sublayer; see sprint/methods/slicegpt.py)."""
    shortcut = getattr(layer, f"sprint_{kind}_shortcut", None)
    return x if shortcut is None else shortcut(x)


def residual_width(config) -> int:
    """The width of the residual stream: ``config.sprint_residual_width`` for a sliced model, else ``hidden_size``."""
    return getattr(config, "sprint_residual_width", None) or config.hidden_size


def set_residual_width(model: nn.Module, width: int) -> None:
    """Make every module that reads or writes the residual stream ``width`` wide (a sliced model, see
    sprint/methods/slicegpt.py): the embeddings, every norm, the attention's q/k/v inputs and output, the MLP's gate/up inputs
    and down output, and the LM head's input; modules of another shape are replaced by new ones, to be loaded.
    Records it in ``config.sprint_residual_width``; ``config.hidden_size`` keeps the dense width, since
    transformers checks it against the number of attention heads (the heads keep their explicit ``head_dim``)."""
    ad = adapter_for(model)
    emb = model.get_input_embeddings()
    if emb.embedding_dim != width:
        model.set_input_embeddings(nn.Embedding(emb.num_embeddings, width, padding_idx=emb.padding_idx,
                                                device=emb.weight.device, dtype=emb.weight.dtype))

    def norm(module: nn.Module | None) -> None:
        if module is not None and module.weight.shape[0] != width:
            module.weight = nn.Parameter(torch.empty(width, device=module.weight.device, dtype=module.weight.dtype))

    for layer in decoder_layers(model):
        attn, mlp = getattr(layer, ad.attn), getattr(layer, ad.mlp)
        norm(getattr(layer, ad.attn_norm))
        norm(getattr(layer, ad.mlp_norm))
        if attn is not None:
            for name in ("q_proj", "k_proj", "v_proj"):
                _resize(attn, name, in_features=width)
            _resize(attn, ad.o_proj, out_features=width)
        if mlp is not None:
            for name in ("gate_proj", "up_proj"):
                _resize(mlp, name, in_features=width)
            _resize(mlp, ad.down_proj, out_features=width)
    norm(model.get_submodule(ad.final_norm))
    head = model.get_output_embeddings()
    if head.in_features != width:
        model.set_output_embeddings(nn.Linear(width, head.out_features, bias=head.bias is not None,
                                              device=head.weight.device, dtype=head.weight.dtype))
    model.config.sprint_residual_width = int(width)


def add_shortcuts(model: nn.Module, weights: list[torch.Tensor] | None = None) -> None:
    """Give every sublayer of ``model`` a bias-free square linear on its residual connection (``weights``: one per
    sublayer in order, each [width, width] for the residual width; None: uninitialised, to be loaded); sets
    ``config.sprint_shortcuts``."""
    layers = decoder_layers(model)
    d = residual_width(model.config)
    for i, layer in enumerate(layers):
        for j, kind in enumerate(KINDS):
            ref = next(layer.parameters())
            linear = nn.Linear(d, d, bias=False, device=ref.device, dtype=ref.dtype)
            if weights is not None:
                with torch.no_grad():
                    linear.weight.copy_(weights[2 * i + j])
            setattr(layer, f"sprint_{kind}_shortcut", linear)
    model.config.sprint_shortcuts = True


def normalize_removed(removed: Iterable) -> list[tuple[int, str]]:
    """Accept (layer, kind) pairs or {"layer", "kind"} dicts; return sorted unique (layer, kind) tuples."""
    out = set()
    for item in removed:
        layer, kind = (item["layer"], item["kind"]) if isinstance(item, dict) else item
        if kind not in KINDS:
            raise ValueError(f"sublayer kind must be one of {KINDS}, got {kind!r}")
        out.add((int(layer), kind))
    return sorted(out)


def set_removed(model: nn.Module, removed: Iterable) -> None:
    """Make exactly the sublayers in ``removed`` skipped (reversible: modules are kept).

    Attention modules that remain are renumbered 0..k-1 (``layer_idx``) so the KV cache stays dense: a
    transformers cache reads the sequence length from cache layer 0, which must belong to a live attention.
    """
    ad = adapter_for(model)
    layers = decoder_layers(model)
    removed = normalize_removed(removed)
    for layer, _ in removed:
        if not 0 <= layer < len(layers):
            raise ValueError(f"layer {layer} out of range: the model has {len(layers)} decoder layers")
    gone = set(removed)
    next_idx = 0
    for i, layer in enumerate(layers):
        if getattr(layer, "sprint_adapter", None) is None:
            layer.sprint_adapter = ad
            layer.forward = types.MethodType(_sublayer_forward, layer)
        layer.sprint_skip = {kind: (i, kind) in gone for kind in KINDS}
        attn = getattr(layer, ad.attn)
        if not layer.sprint_skip["attn"]:
            if attn is None:
                raise ValueError(f"attention sublayer of layer {i} was stripped and cannot be restored")
            attn.layer_idx = next_idx
            next_idx += 1
        if not layer.sprint_skip["mlp"] and getattr(layer, ad.mlp) is None:
            raise ValueError(f"MLP sublayer of layer {i} was stripped and cannot be restored")
    model.config.sprint_removed = [list(r) for r in removed]


def removed_sublayers(model: nn.Module) -> list[tuple[int, str]]:
    return normalize_removed(getattr(model.config, "sprint_removed", None) or [])


def strip_removed(model: nn.Module) -> None:
    """Delete the modules (and so the parameters) of the removed sublayers, norms included."""
    ad = adapter_for(model)
    layers = decoder_layers(model)
    for layer, kind in removed_sublayers(model):
        setattr(layers[layer], ad.module(kind), None)
        setattr(layers[layer], ad.norm(kind), None)


def layer_shapes(model: nn.Module) -> list[list[int]]:
    """Every decoder layer's [query heads per KV group, MLP width], as its modules have them."""
    ad = adapter_for(model)
    out = []
    for layer in decoder_layers(model):
        attn, mlp = getattr(layer, ad.attn), getattr(layer, ad.mlp)
        q = attn.q_proj.out_features // attn.head_dim if attn is not None else 0
        out.append([q // model.config.num_key_value_heads, mlp.down_proj.in_features if mlp is not None else 0])
    return out


def set_layer_shapes(model: nn.Module, shapes: list[list[int]]) -> None:
    """Give each decoder layer ``shapes[i]`` = [query heads per KV group, MLP width] (a structurally pruned model,
    see sprint/methods/llm_pruner.py): projections of another shape are replaced by new ones of that shape, to be loaded;
    records the shapes in ``config.sprint_layer_shapes``."""
    ad = adapter_for(model)
    kv = model.config.num_key_value_heads
    for layer, (per_group, width) in zip(decoder_layers(model), shapes):
        attn, mlp = getattr(layer, ad.attn), getattr(layer, ad.mlp)
        if attn is not None:
            inner = per_group * kv * attn.head_dim
            _resize(attn, "q_proj", out_features=inner)
            _resize(attn, ad.o_proj, in_features=inner)
            attn.num_key_value_groups = per_group
        if mlp is not None:
            _resize(mlp, "gate_proj", out_features=width)
            _resize(mlp, "up_proj", out_features=width)
            _resize(mlp, ad.down_proj, in_features=width)
    model.config.sprint_layer_shapes = [list(s) for s in shapes]


def _resize(parent: nn.Module, name: str, in_features: int | None = None, out_features: int | None = None) -> None:
    old = getattr(parent, name)
    shape = (out_features or old.out_features, in_features or old.in_features)
    if (old.out_features, old.in_features) != shape:
        setattr(parent, name, nn.Linear(shape[1], shape[0], bias=old.bias is not None, device=old.weight.device,
                                        dtype=old.weight.dtype))


class _SprintPrunedMixin:
    """Builds the dense architecture, then removes the sublayers listed in ``config.sprint_removed`` (and gives a
    sliced model its residual width and shortcuts, ``config.sprint_residual_width`` / ``sprint_shortcuts``, and gives a structurally pruned model its
    layers' shapes, ``config.sprint_layer_shapes``)."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        set_removed(self, getattr(config, "sprint_removed", None) or [])
        strip_removed(self)
        if getattr(config, "sprint_residual_width", None):
            set_residual_width(self, config.sprint_residual_width)
        if getattr(config, "sprint_shortcuts", False):
            add_shortcuts(self)
        if getattr(config, "sprint_layer_shapes", None):
            set_layer_shapes(self, config.sprint_layer_shapes)


def _pruned_class(adapter: Adapter) -> type:
    """``Sprint<Family>ForCausalLM``: the family's causal LM that drops its removed sublayers when built."""
    base = adapter.causal_lm
    return type(f"Sprint{base.__name__}", (_SprintPrunedMixin, base),
                {"config_class": base.config_class, "__module__": __name__})


# model_type -> pruned class, derived from ADAPTERS; module attributes, since a checkpoint's config.json names its
# class in ``auto_map`` ("modeling_sprint.SprintLlamaForCausalLM").
PRUNED_CLASSES = {model_type: _pruned_class(adapter) for model_type, adapter in ADAPTERS.items()}
globals().update({cls.__name__: cls for cls in PRUNED_CLASSES.values()})
