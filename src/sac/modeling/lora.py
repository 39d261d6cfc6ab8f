"""LoRA on the query and value parts of fused ``qkv`` projections (the SAC paper's adaptation).

Each adapted projection computes ``W x + b`` plus ``s * B_q A_q x`` on the query rows and
``s * B_v A_v x`` on the value rows (``s = alpha / rank``); key rows and base weights are left
alone. ``B`` starts at zero, so an adapted model equals its base model until it is trained.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LoRAConfig:
    """Rank, scaling and which attention blocks (encoder order; ``None`` = all) carry LoRA."""

    rank: int = 4
    alpha: float = 4.0
    blocks: tuple[int, ...] | None = None

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank if self.rank else 0.0


class LoRAQKV(nn.Module):
    """Drop-in replacement for a fused qkv ``nn.Linear`` with low-rank Q and V updates.

    It keeps the base ``weight``/``bias`` names so base checkpoints keep loading.
    """

    def __init__(
        self, base: nn.Linear, q_rows: torch.Tensor, v_rows: torch.Tensor, rank: int, alpha: float
    ) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.rank, self.scaling = rank, alpha / rank
        self.register_buffer("q_rows", q_rows.clone(), persistent=False)
        self.register_buffer("v_rows", v_rows.clone(), persistent=False)
        dev = base.weight.device
        self.lora_q_A = nn.Parameter(torch.empty(rank, self.in_features, device=dev))
        self.lora_q_B = nn.Parameter(torch.zeros(len(q_rows), rank, device=dev))
        self.lora_v_A = nn.Parameter(torch.empty(rank, self.in_features, device=dev))
        self.lora_v_B = nn.Parameter(torch.zeros(len(v_rows), rank, device=dev))
        nn.init.kaiming_uniform_(self.lora_q_A, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.lora_v_A, a=math.sqrt(5))
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The dense (out, in) update that LoRA adds to ``weight`` (in the weight's dtype,
        also under autocast)."""
        with torch.autocast(self.weight.device.type, enabled=False):
            delta = self.weight.new_zeros(self.out_features, self.in_features)
            delta = delta.index_add(0, self.q_rows, self.lora_q_B @ self.lora_q_A)
            delta = delta.index_add(0, self.v_rows, self.lora_v_B @ self.lora_v_A)
        return delta * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return F.linear(x, self.weight, self.bias)
        # One matmul with the updated weight: the (out, in) update is tiny next to the
        # activations, so forming it costs far less than adding low-rank outputs row by row
        # (and its backward is cheaper too).
        return F.linear(x, self.weight + self.delta_weight(), self.bias)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``weight`` (faster inference; adapters stay for unmerging)."""
        if not self.merged:
            self.weight.add_(self.delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge`."""
        if self.merged:
            self.weight.sub_(self.delta_weight())
            self.merged = False


def attention_modules(encoder: nn.Module) -> list[nn.Module]:
    """Attention modules with a fused ``qkv`` projection, in encoder order."""
    return [m for m in encoder.modules() if hasattr(m, "qv_rows") and hasattr(m, "qkv")]


def apply_lora(encoder: nn.Module, cfg: LoRAConfig) -> list[LoRAQKV]:
    """Replace the ``qkv`` of the selected attention blocks by :class:`LoRAQKV`; freeze the base.

    Returns the adapters. ``cfg.rank == 0`` adapts nothing (the paper's "no LoRA" ablation).
    """
    attns = attention_modules(encoder)
    if cfg.rank == 0:
        return []
    chosen = range(len(attns)) if cfg.blocks is None else cfg.blocks
    bad = [i for i in chosen if not 0 <= i < len(attns)]
    if bad:
        raise ValueError(f"LoRA blocks {bad} out of range: the encoder has {len(attns)} blocks")
    adapters = []
    for i in chosen:
        attn = attns[i]
        if isinstance(attn.qkv, LoRAQKV):
            raise ValueError(f"attention block {i} already carries LoRA")
        q_rows, v_rows = attn.qv_rows()
        attn.qkv.weight.requires_grad_(False)
        if attn.qkv.bias is not None:
            attn.qkv.bias.requires_grad_(False)
        attn.qkv = LoRAQKV(attn.qkv, q_rows, v_rows, cfg.rank, cfg.alpha)
        adapters.append(attn.qkv)
    return adapters


def lora_modules(model: nn.Module) -> Iterator[tuple[str, LoRAQKV]]:
    """(name, module) for every LoRA adapter in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, LoRAQKV):
            yield name, module


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors, keyed by their full parameter names."""
    return {k: v for k, v in model.state_dict().items() if ".lora_" in k}


def load_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load adapters saved by :func:`lora_state_dict`; keys and shapes must match exactly."""
    own = lora_state_dict(model)
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(
            "LoRA adapters do not fit this model: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
        )
    for _, module in lora_modules(model):
        if module.merged:
            raise ValueError("unmerge LoRA before loading new adapters")
    model.load_state_dict(state, strict=False)


def merge_lora(model: nn.Module) -> None:
    """Merge every adapter in ``model`` into its base weights."""
    for _, module in lora_modules(model):
        module.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Undo :func:`merge_lora`."""
    for _, module in lora_modules(model):
        module.unmerge()
