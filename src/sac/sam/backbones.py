"""Registry of SAM-family backbones and the builder that assembles (and loads) a :class:`Sam`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from sac.core.device import resolve_device
from sac.core.errors import ConfigError
from sac.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TinyViT,
    TinyViTConfig,
    TwoWayTransformer,
    ViTConfig,
)
from sac.sam.weights import find_litemedsam, load_state_dict_checked, read_state_dict, sha256_of

Normalization = Literal["minmax", "imagenet"]


@dataclass(frozen=True)
class DecoderConfig:
    """Prompt-encoder and mask-decoder widths (SAM's defaults)."""

    depth: int = 2
    num_heads: int = 8
    mlp_dim: int = 2048
    iou_hidden: int = 256
    mask_in_chans: int = 16


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build a backbone and feed it correctly pre-processed pixels."""

    name: str
    description: str
    encoder: TinyViTConfig | ViTConfig
    normalization: Normalization  # minmax: scale to [0, 1]; imagenet: 0-255 then mean/std
    decoder: DecoderConfig = DecoderConfig()
    bundled_weights: bool = False  # True: weights come from an installed package
    optional_keys: tuple[str, ...] = ()  # checkpoint keys that may be absent (unused heads)

    @property
    def image_size(self) -> int:
        return self.encoder.img_size


BACKBONES: dict[str, BackboneSpec] = {
    "lite_medsam": BackboneSpec(
        "lite_medsam",
        "LiteMedSAM: TinyViT distilled from MedSAM, 256x256 input (default; weights bundled)",
        TinyViTConfig(),
        "minmax",
        bundled_weights=True,
    ),
    "vit_t": BackboneSpec(
        "vit_t",
        "MobileSAM TinyViT, 1024x1024 input (pass --sam-checkpoint)",
        TinyViTConfig(img_size=1024, patch_kernel=3, patch_stride=2, num_classes=1000),
        "imagenet",
        optional_keys=("image_encoder.norm_head.", "image_encoder.head."),
    ),
    "vit_b": BackboneSpec("vit_b", "SAM ViT-B, 1024x1024 input (pass --sam-checkpoint)",
                          ViTConfig(), "imagenet"),
    "vit_l": BackboneSpec(
        "vit_l", "SAM ViT-L, 1024x1024 input (pass --sam-checkpoint)",
        ViTConfig(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
        "imagenet",
    ),
    "vit_h": BackboneSpec(
        "vit_h", "SAM ViT-H, 1024x1024 input (pass --sam-checkpoint)",
        ViTConfig(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
        "imagenet",
    ),
}
DEFAULT_BACKBONE = "lite_medsam"


def get_spec(name: str) -> BackboneSpec:
    """Look a backbone up by name, with a helpful error listing the choices."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(
            f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}"
        ) from None


def tiny_spec(name: str) -> BackboneSpec:
    """A very small variant of a backbone with the same structure, for fast tests."""
    spec = get_spec(name)
    dec = DecoderConfig(depth=2, num_heads=2, mlp_dim=32, iou_hidden=16, mask_in_chans=8)
    if isinstance(spec.encoder, TinyViTConfig):
        stride = spec.encoder.patch_stride
        enc: TinyViTConfig | ViTConfig = replace(
            spec.encoder, img_size=64 * stride * stride, embed_dims=(8, 16, 16, 24),
            depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 2), out_chans=64,
            num_classes=10 if spec.encoder.num_classes else 0,
        )
    else:
        enc = replace(spec.encoder, img_size=64, patch_size=4, embed_dim=16, depth=4,
                      num_heads=2, window_size=7, global_attn_indexes=(1, 3), out_chans=16)
    return replace(spec, encoder=enc, decoder=dec)


def build_sam(spec: BackboneSpec) -> Sam:
    """Assemble an untrained :class:`Sam` for ``spec`` (random weights)."""
    enc_cfg = spec.encoder
    encoder: TinyViT | ImageEncoderViT = (
        TinyViT(enc_cfg) if isinstance(enc_cfg, TinyViTConfig) else ImageEncoderViT(enc_cfg)
    )
    dim, grid, dec = enc_cfg.out_chans, encoder.embedding_size, spec.decoder
    prompt_encoder = PromptEncoder(dim, (grid, grid), (spec.image_size, spec.image_size),
                                   dec.mask_in_chans)
    transformer = TwoWayTransformer(dec.depth, dim, dec.num_heads, dec.mlp_dim)
    decoder = MaskDecoder(dim, transformer, 3, 3, dec.iou_hidden)
    encoder.to(memory_format=torch.channels_last)  # faster CPU convolutions; see Sam.encode
    return Sam(encoder, prompt_encoder, decoder)


def default_checkpoint(spec: BackboneSpec) -> Path:
    """The checkpoint used when none is given: bundled weights, or an error saying what to pass."""
    if spec.bundled_weights:
        return find_litemedsam()
    raise ConfigError(
        f"backbone {spec.name!r} has no bundled weights: pass its checkpoint with "
        "--sam-checkpoint PATH (Python: checkpoint=PATH)"
    )


def load_sam(
    backbone: str = DEFAULT_BACKBONE,
    checkpoint: str | Path | None = None,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
) -> Sam:
    """Build a backbone and load its weights (bundled LiteMedSAM when ``checkpoint`` is None).

    ``pretrained=False`` returns random weights (benchmarks, tests). The model is in eval mode.
    """
    spec = get_spec(backbone)
    dev = resolve_device(device)
    model = build_sam(spec)
    if pretrained:
        path = Path(checkpoint) if checkpoint is not None else default_checkpoint(spec)
        state = read_state_dict(path)
        load_state_dict_checked(model, state, str(path), spec.optional_keys)
    return model.to(dev).eval()


def checkpoint_sha256(backbone: str, checkpoint: str | Path | None = None) -> str:
    """sha256 of the base weights a model is built on (recorded in saved model configs)."""
    spec = get_spec(backbone)
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(spec)
    return sha256_of(path)
