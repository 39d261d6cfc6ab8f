"""Architecture: every backbone builds and runs; Meta-layout state dicts load strictly."""

from __future__ import annotations

import pytest
import torch

from sac.core.errors import ConfigError, WeightsError
from sac.sam.backbones import BACKBONES, build_sam, get_spec, load_sam, tiny_spec
from sac.sam.weights import find_litemedsam, load_state_dict_checked, read_state_dict


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_tiny_backbone_forward(name: str) -> None:
    spec = tiny_spec(name)
    model = build_sam(spec).eval()
    x = torch.randn(2, 3, spec.image_size, spec.image_size)
    with torch.no_grad():
        emb = model.encode(x)
        grid = model.image_encoder.embedding_size
        assert emb.shape == (2, spec.encoder.out_chans, grid, grid)
        pts = torch.rand(3, 2, 2) * spec.image_size
        lbl = torch.tensor([[1, 0]] * 3)
        boxes = torch.tensor([[4.0, 4.0, 30.0, 30.0]] * 3)
        low, iou = model.decode(emb[:1], pts, lbl, boxes, multimask=True)
        assert low.shape == (3, 3, 4 * grid, 4 * grid) and iou.shape == (3, 3)
        low1, iou1 = model.decode(emb, boxes=boxes[:2], multimask=False)
        assert low1.shape == (2, 1, 4 * grid, 4 * grid) and iou1.shape == (2, 1)
        assert torch.isfinite(low).all()


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_meta_layout_roundtrip_strict(name: str, tmp_path) -> None:
    """A state dict saved the way Meta ships checkpoints reloads strictly and reproduces outputs."""
    spec = tiny_spec(name)
    a = build_sam(spec).eval()
    path = tmp_path / "ckpt.pth"
    torch.save(a.state_dict(), path)
    b = build_sam(spec).eval()
    load_state_dict_checked(b, read_state_dict(path), str(path), spec.optional_keys)
    x = torch.randn(1, 3, spec.image_size, spec.image_size)
    with torch.no_grad():
        assert torch.equal(a.encode(x), b.encode(x))


def test_full_size_key_layout_matches_meta() -> None:
    """Full-size models (built without memory) carry Meta's names and shapes."""
    with torch.device("meta"):
        vit_b_model = build_sam(get_spec("vit_b"))
        vit_b = vit_b_model.state_dict()
        vit_t = build_sam(get_spec("vit_t")).state_dict()
    expected_b = {
        "image_encoder.pos_embed": (1, 64, 64, 768),
        "image_encoder.patch_embed.proj.weight": (768, 3, 16, 16),
        "image_encoder.blocks.0.attn.rel_pos_h": (27, 64),
        "image_encoder.blocks.2.attn.rel_pos_w": (127, 64),  # global attention block
        "image_encoder.blocks.11.attn.qkv.weight": (2304, 768),
        "image_encoder.neck.0.weight": (256, 768, 1, 1),
        "image_encoder.neck.3.bias": (256,),
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (2, 128),
        "prompt_encoder.mask_downscaling.6.weight": (256, 16, 1, 1),
        "mask_decoder.output_upscaling.3.weight": (64, 32, 2, 2),
        "mask_decoder.iou_prediction_head.layers.2.weight": (4, 256),
    }
    for key, shape in expected_b.items():
        assert tuple(vit_b[key].shape) == shape, key
    # SAM ViT-B's published parameter count
    assert sum(p.numel() for p in vit_b_model.parameters()) == 93_735_472
    assert tuple(vit_t["image_encoder.patch_embed.seq.0.c.weight"].shape) == (32, 3, 3, 3)
    assert tuple(vit_t["image_encoder.head.weight"].shape) == (1000, 320)


def test_litemedsam_checkpoint_keys_match_exactly() -> None:
    state = read_state_dict(find_litemedsam())
    own = build_sam(get_spec("lite_medsam")).state_dict()
    assert set(state) == set(own)
    assert all(state[k].shape == own[k].shape for k in own)


def test_other_architecture_refused_with_key_names(tmp_path) -> None:
    path = tmp_path / "vit_b_tiny.pth"
    torch.save(build_sam(tiny_spec("vit_b")).state_dict(), path)
    with pytest.raises(WeightsError) as err:
        load_sam("lite_medsam", checkpoint=path)
    msg = str(err.value)
    assert "does not match this architecture" in msg
    assert "missing" in msg and "image_encoder.layers.0" in msg
    assert "unexpected" in msg and "image_encoder.blocks.0" in msg


def test_unknown_backbone() -> None:
    with pytest.raises(ConfigError, match=r"unknown backbone 'vit_x'.*lite_medsam"):
        get_spec("vit_x")


def test_no_bundled_weights_for_meta_backbones() -> None:
    with pytest.raises(ConfigError, match="--sam-checkpoint"):
        load_sam("vit_b")


def test_full_grid_window_equals_full_decode() -> None:
    spec = tiny_spec("lite_medsam")
    model = build_sam(spec).eval()
    grid = model.image_encoder.embedding_size
    with torch.no_grad():
        emb = model.encode(torch.randn(2, 3, spec.image_size, spec.image_size))
        boxes = torch.tensor([[4.0, 4.0, 30.0, 30.0], [10.0, 20.0, 40.0, 50.0]])
        full, iou = model.decode(emb, boxes=boxes)
        win, iou_w = model.decode_windows(emb, torch.zeros(2, 2, dtype=torch.long), grid,
                                          boxes=boxes)
    assert torch.allclose(full, win, atol=1e-5) and torch.allclose(iou, iou_w, atol=1e-5)


def test_window_of_a_big_embedding_decodes_as_in_a_model_sized_one() -> None:
    """``pe_origins``: a window cut from a larger grid, its prompts given in a virtual
    model-sized tile, decodes exactly as the same window placed there in a model-sized grid."""
    spec = tiny_spec("lite_medsam")
    model = build_sam(spec).eval()
    grid = model.image_encoder.embedding_size
    stride = spec.image_size / grid
    gen = torch.Generator().manual_seed(0)
    big = torch.randn(1, model.prompt_encoder.embed_dim, 2 * grid, 2 * grid, generator=gen)
    size, at, virtual = 8, (grid + 3, grid - 5), (grid // 2 - 4, grid // 2 - 4)
    native = torch.zeros(1, big.shape[1], grid, grid)
    native[..., virtual[0]:virtual[0] + size, virtual[1]:virtual[1] + size] = \
        big[..., at[0]:at[0] + size, at[1]:at[1] + size]
    local = torch.tensor([[[virtual[1] + 3.5, virtual[0] + 4.0]]]) * stride  # (x, y) pixels
    labels = torch.ones(1, 1, dtype=torch.long)
    with torch.no_grad():
        want, iou_w = model.decode_windows(native, torch.tensor([virtual]), size, local, labels)
        got, iou_g = model.decode_windows(big, torch.tensor([at]), size, local, labels,
                                          pe_origins=torch.tensor([virtual]))
    assert torch.allclose(want, got, atol=1e-5) and torch.allclose(iou_w, iou_g, atol=1e-5)


def test_window_origins_stay_inside_grid() -> None:
    from sac.modeling.sam import window_origins

    centres = torch.tensor([[0.0, 0.0], [255.0, 255.0], [128.0, 40.0]])
    o = window_origins(centres, 16, 64, 4.0)
    assert o.tolist() == [[0, 0], [48, 48], [2, 24]]
