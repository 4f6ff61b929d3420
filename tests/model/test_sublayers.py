"""The sublayer view: removal is exactly 'skip the residual branch', survives save/load, and keeps the KV cache."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from sprint.model.tiny import FAMILIES, tiny_model
from sprint.model.tiny import word_tokenizer as tiny_tokenizer
from sprint.model.checkpoint import load_pruned, save_pruned
from sprint.model.modeling_sprint import UnsupportedModelError, adapter_for, set_removed

REMOVED = [(0, "attn"), (1, "mlp"), (2, "attn"), (2, "mlp")]  # includes layer 0's attention and a whole layer


def reference_forward(model, ids, removed):
    """Hand-written decoder forward that skips the removed residual branches, from the model's own modules."""
    base = model.model
    h = base.embed_tokens(ids)
    pos = torch.arange(ids.shape[1])[None]
    rope = base.rotary_emb(h, pos)
    for i, layer in enumerate(base.layers):
        if (i, "attn") not in removed:
            a, _ = layer.self_attn(layer.input_layernorm(h), position_embeddings=rope, attention_mask=None)
            h = h + a
        if (i, "mlp") not in removed:
            h = h + layer.mlp(layer.post_attention_layernorm(h))
    return model.lm_head(base.norm(h))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_removal_matches_handwritten_forward(family):
    model = tiny_model(family)
    ids = torch.randint(3, 90, (2, 12))
    with torch.inference_mode():
        dense = model(ids).logits
        assert torch.allclose(dense, reference_forward(model, ids, set()), atol=1e-5)
        set_removed(model, REMOVED)
        pruned = model(ids).logits
        assert torch.allclose(pruned, reference_forward(model, ids, set(REMOVED)), atol=1e-5)
        assert not torch.allclose(pruned, dense, atol=1e-3)
        set_removed(model, [])  # reversible
        assert torch.allclose(model(ids).logits, dense, atol=1e-6)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_save_load_roundtrip_and_cached_generation(family, tmp_path):
    model = tiny_model(family)
    set_removed(model, REMOVED)
    out = save_pruned(model, tiny_tokenizer(), tmp_path / "ckpt", {"method": "test", "removed": []})
    names = {k for k in __import__("safetensors.torch", fromlist=["load_file"]).load_file(out / "model.safetensors")}
    assert not any(k.startswith("model.layers.0.self_attn.") or k.startswith("model.layers.0.input_layernorm") for k in names)
    assert not any(k.startswith("model.layers.2.") for k in names)  # both sublayers of layer 2 removed
    assert any(k.startswith("model.layers.1.self_attn.") for k in names)

    ids = torch.randint(3, 90, (1, 10))
    with torch.inference_mode():
        expected = model(ids).logits
        loaded, tok = load_pruned(out)
        assert torch.equal(loaded(ids).logits, expected)
        remote = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
        assert type(remote).__name__.startswith("Sprint")
        assert torch.equal(remote(ids).logits, expected)
        assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in tiny_model(family).parameters())

        kw = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
        cached = loaded.generate(ids, attention_mask=torch.ones_like(ids), use_cache=True, **kw)
        uncached = loaded.generate(ids, attention_mask=torch.ones_like(ids), use_cache=False, **kw)
    assert torch.equal(cached, uncached)
    assert tok("a b").input_ids == tiny_tokenizer()("a b").input_ids


def test_unsupported_architecture_is_named():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(UnsupportedModelError, match=r"GPT2LMHeadModel.*supported: llama"):
        adapter_for(model)
