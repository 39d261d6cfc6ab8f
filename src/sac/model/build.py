"""A SAC model in memory: SAM with LoRA, the prompt generator and their :class:`SACConfig`.

No file I/O here (see :mod:`sac.model.store`); this module builds the modules from a config
and a base state dict, and names the tensors of each trainable part.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from sac.core.errors import ConfigError
from sac.model.config import SACConfig
from sac.model.size_head import SizeHead
from sac.modeling import LoRAConfig, Sam, apply_lora
from sac.modeling.generator import GeneratorConfig, PromptGenerator
from sac.modeling.lora import lora_state_dict
from sac.sam.backbones import BackboneSpec, DecoderConfig, build_sam, get_spec, tiny_spec
from sac.sam.weights import load_state_dict_checked


def spec_for(config: SACConfig) -> BackboneSpec:
    """The backbone spec of ``config``, with its (test-only) size overrides applied."""
    spec = get_spec(config.backbone)
    over = config.backbone_overrides
    if not over:
        return spec
    unknown = sorted(set(over) - {"encoder", "decoder"})
    if unknown:
        raise ConfigError(f"backbone_overrides: unknown section(s) {unknown}")

    def fix(section: str, default: Any) -> dict[str, Any]:
        """The section's overrides, each of its field's type; sizes and counts positive."""
        values = over.get(section, {})
        if not isinstance(values, dict):
            raise ConfigError(f"backbone_overrides.{section}: expected an object")
        out = {}
        for k, v in values.items():
            if not hasattr(default, k):
                raise ConfigError(f"backbone_overrides.{section}: unknown key {k!r}")
            want = getattr(default, k)
            v = tuple(v) if isinstance(v, list) else v
            items = v if isinstance(v, tuple) else (v,)
            kinds = want if isinstance(want, tuple) else (want,)
            numeric = all(isinstance(x, int | float) and not isinstance(x, bool)
                          for x in kinds)
            if isinstance(want, tuple) != isinstance(v, tuple) or (numeric and not all(
                    isinstance(x, int | float) and not isinstance(x, bool) and x > 0
                    for x in items)) or (not numeric and type(v) is not type(want)):
                raise ConfigError(f"backbone_overrides.{section}.{k}: {v!r} is not a valid "
                                  f"value (like {want!r}: positive numbers)")
            out[k] = v
        return out

    try:
        enc = dataclasses.replace(spec.encoder, **fix("encoder", spec.encoder))
        dec = dataclasses.replace(spec.decoder, **fix("decoder", spec.decoder))
    except TypeError as exc:
        raise ConfigError(f"backbone_overrides: {exc}") from None
    return dataclasses.replace(spec, encoder=enc, decoder=dec)


def tiny_overrides(backbone: str) -> dict[str, Any]:
    """Overrides turning ``backbone`` into its tiny test variant (see :func:`tiny_spec`)."""
    full, tiny = get_spec(backbone), tiny_spec(backbone)

    def diff(a: Any, b: Any) -> dict[str, Any]:
        return {f.name: getattr(b, f.name) for f in dataclasses.fields(b)
                if getattr(a, f.name) != getattr(b, f.name)}

    return {"encoder": diff(full.encoder, tiny.encoder),
            "decoder": diff(DecoderConfig(), tiny.decoder)}


class SACModel(nn.Module):
    """SAM (frozen encoder + LoRA, prompt encoder, mask decoder) and the prompt generator."""

    def __init__(self, config: SACConfig, sam: Sam, generator: PromptGenerator,
                 spec: BackboneSpec) -> None:
        super().__init__()
        self.config = config
        self.sam = sam
        self.generator = generator
        self.spec = spec
        self.size_head: SizeHead | None = None  # nucleus-size regressor, when fitted

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def part_state(self, part: str) -> dict[str, torch.Tensor]:
        """The tensors of one trainable part, as stored in ``<part>.safetensors``."""
        if part == "lora":
            return lora_state_dict(self.sam)
        if part == "mask_decoder":
            return self.sam.mask_decoder.state_dict()
        if part == "prompt_encoder":
            return self.sam.prompt_encoder.state_dict()
        if part == "generator":
            return self.generator.state_dict()
        raise ConfigError(f"unknown model part {part!r}")

    def part_module(self, part: str) -> nn.Module:
        """The module whose parameters make up ``part`` (LoRA: the image encoder)."""
        return {"lora": self.sam.image_encoder, "mask_decoder": self.sam.mask_decoder,
                "prompt_encoder": self.sam.prompt_encoder, "generator": self.generator}[part]

    def base_state(self) -> dict[str, torch.Tensor]:
        """SAM's weights without the LoRA tensors (what a base checkpoint holds)."""
        return {k: v for k, v in self.sam.state_dict().items() if ".lora_" not in k}

    def train_mode(self, parts: tuple[str, ...]) -> None:
        """Training mode for the trained parts only; the frozen encoder stays in eval mode so
        its BatchNorm statistics are never updated."""
        self.eval()
        for part in parts:
            if part != "lora":
                self.part_module(part).train()


def build_model(config: SACConfig, base_state: dict[str, torch.Tensor] | None,
                source: str = "base weights") -> SACModel:
    """Assemble a :class:`SACModel` from ``config``; load ``base_state`` into SAM strictly
    (``None`` keeps random base weights, for tests). Trained parts start untrained."""
    spec = spec_for(config)
    sam = build_sam(spec)
    if base_state is not None:
        load_state_dict_checked(sam, base_state, source, spec.optional_keys)
    for p in sam.parameters():
        p.requires_grad_(False)
    if config.lora_rank > 0:
        try:
            apply_lora(sam.image_encoder,
                       LoRAConfig(config.lora_rank, config.lora_alpha, config.lora_blocks))
        except ValueError as exc:  # e.g. lora_blocks beyond the encoder's blocks
            raise ConfigError(f"lora_blocks {list(config.lora_blocks or ())}: {exc}") from None
    generator = PromptGenerator(GeneratorConfig(widths=config.generator_widths,
                                                hv=config.centre_target == "hv"))
    return SACModel(config, sam, generator, spec)
