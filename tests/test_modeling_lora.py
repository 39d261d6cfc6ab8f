"""LoRA on Q and V of fused qkv projections: identity at init, gradients, save/load, merge."""

from __future__ import annotations

import pytest
import torch

from sac.core.errors import InputError, WeightsError
from sac.model.adapters import load_lora, save_lora
from sac.modeling.lora import (
    LoRAConfig,
    LoRAQKV,
    apply_lora,
    attention_modules,
    merge_lora,
    unmerge_lora,
)
from sac.sam.backbones import BACKBONES, build_sam, tiny_spec


def _model(name: str = "lite_medsam"):
    spec = tiny_spec(name)
    return build_sam(spec).eval(), torch.randn(2, 3, spec.image_size, spec.image_size)


def _randomise_adapters(model: torch.nn.Module) -> None:
    for n, p in model.named_parameters():
        if "lora_" in n:
            torch.nn.init.normal_(p, std=0.2)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_identity_at_init(name: str) -> None:
    model, x = _model(name)
    with torch.no_grad():
        before = model.encode(x)
        adapters = apply_lora(model.image_encoder, LoRAConfig(rank=4))
        assert len(adapters) == len(attention_modules(model.image_encoder)) > 0
        assert torch.equal(before, model.encode(x))


@pytest.mark.parametrize("name", ["lite_medsam", "vit_b"])
def test_only_adapters_get_gradients(name: str) -> None:
    model, x = _model(name)
    for p in model.image_encoder.parameters():
        p.requires_grad_(False)
    apply_lora(model.image_encoder, LoRAConfig(rank=2))
    _randomise_adapters(model)  # non-zero B so that A receives gradients too
    model.image_encoder(x).square().mean().backward()
    for n, p in model.image_encoder.named_parameters():
        if "lora_" in n:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n


@pytest.mark.parametrize("name", ["lite_medsam", "vit_b"])
def test_only_query_and_value_rows_change(name: str) -> None:
    model, _ = _model(name)
    apply_lora(model.image_encoder, LoRAConfig(rank=2))
    _randomise_adapters(model)
    for attn in attention_modules(model.image_encoder):
        qkv: LoRAQKV = attn.qkv
        delta = qkv.delta_weight()
        changed = delta.abs().sum(1) > 0
        q_rows, v_rows = attn.qv_rows()
        expected = torch.zeros_like(changed)
        expected[q_rows] = True
        expected[v_rows] = True
        assert torch.equal(changed, expected)
        assert changed.sum() == 2 * qkv.out_features // 3  # keys (a third) untouched


def test_tinyvit_query_rows_are_per_head_interleaved() -> None:
    """TinyViT lays qkv out per head ([q|k|v] for head 0, then head 1, ...)."""
    model, _ = _model("lite_medsam")
    attn = attention_modules(model.image_encoder)[1]  # a block with 2 heads
    q_rows, v_rows = attn.qv_rows()
    kd = attn.key_dim
    assert q_rows.tolist()[:kd] == list(range(kd))
    assert q_rows.tolist()[kd] == 3 * kd  # second head's queries
    assert v_rows.tolist()[0] == 2 * kd


def test_block_selection_and_rank_zero() -> None:
    model, _ = _model("vit_b")
    n = len(attention_modules(model.image_encoder))
    assert apply_lora(model.image_encoder, LoRAConfig(rank=0)) == []
    adapters = apply_lora(model.image_encoder, LoRAConfig(rank=2, blocks=(0, n - 1)))
    assert len(adapters) == 2
    with pytest.raises(ValueError, match="out of range"):
        apply_lora(_model("vit_b")[0].image_encoder, LoRAConfig(rank=2, blocks=(n,)))


def test_save_load_exact_and_merge(tmp_path) -> None:
    model, x = _model("lite_medsam")
    apply_lora(model.image_encoder, LoRAConfig(rank=4, alpha=8))
    _randomise_adapters(model)
    path = save_lora(model, tmp_path / "lora.safetensors")
    with pytest.raises(InputError, match="already exists"):
        save_lora(model, path)

    other, _ = _model("lite_medsam")
    other.load_state_dict(model.state_dict(), strict=False)  # same base weights
    assert not any("lora_" in n for n, _ in other.named_parameters())
    apply_lora(other.image_encoder, LoRAConfig(rank=4, alpha=8))
    load_lora(other, path)
    with torch.no_grad():
        out = model.encode(x)
        assert torch.equal(out, other.encode(x))
        merge_lora(other)
        merged = other.encode(x)
        assert torch.allclose(out, merged, atol=1e-5)
        unmerge_lora(other)
        assert torch.allclose(out, other.encode(x), atol=1e-5)


def test_load_into_mismatched_layout_fails(tmp_path) -> None:
    model, _ = _model("lite_medsam")
    apply_lora(model.image_encoder, LoRAConfig(rank=4))
    path = save_lora(model, tmp_path / "lora.safetensors")
    other, _ = _model("lite_medsam")
    apply_lora(other.image_encoder, LoRAConfig(rank=2))
    with pytest.raises(WeightsError, match="wrong shape"):
        load_lora(other, path)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="could not read"):
        load_lora(other, tmp_path / "bad.safetensors")
