"""Standalone training of the prompt generator, before (or instead of) the joint stage.

The generator decides what SAM is asked about, and it is cheap: a step on eight crops costs a
fraction of one SAM step. Training it alone for thousands of steps before the joint stage
gives SAM good prompts from the start of joint training, at little CPU cost. The stage has its
own optimiser and warm-up + cosine schedule; its crops come from their own seeded stream, so
the joint stage sees the same crops with or without it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sac.core.device import autocast_context
from sac.core.errors import ConfigError
from sac.modeling.generator import PromptGenerator
from sac.training.losses import generator_loss
from sac.training.sampler import CropSampler
from sac.training.targets import generator_targets

STREAM = 7919  # offsets the stage's crop seeds from the joint stage's


@dataclass(frozen=True)
class GeneratorStageConfig:
    """Settings of the standalone generator stage (``steps`` 0 = no stage)."""

    steps: int = 0
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    log_every: int = 100
    bf16: bool = False  # bfloat16 autocast of the forward pass (about 2x faster on a CPU)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.log_every < 1:
            raise ConfigError("generator stage: steps must be >= 0, batch size and log "
                              "interval >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"generator stage: learning rate must be > 0; got {self.lr}")


def warmup_cosine(warmup: int, total: int, floor: float = 0.05) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then cosine decay to ``floor`` of the peak."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return factor


def train_generator(generator: PromptGenerator, sampler: CropSampler,
                    cfg: GeneratorStageConfig, seed: int, device: torch.device,
                    log: Callable[[dict[str, Any]], None] | None = None,
                    centre: str = "gaussian") -> list[dict[str, Any]]:
    """Train ``generator`` alone for ``cfg.steps`` steps towards ``centre``-kind targets
    (:func:`sac.training.targets.generator_targets`); returns one record per log interval
    (step, mean loss, learning rate, seconds)."""
    if cfg.steps == 0:
        return []
    generator.train()
    for p in generator.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(generator.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.warmup_steps, cfg.steps))
    history: list[dict[str, Any]] = []
    total, n, t0 = 0.0, 0, time.perf_counter()
    for step in range(cfg.steps):
        crops = sampler.batch(seed + STREAM, step, cfg.batch_size)
        x = torch.from_numpy(np.stack([c.rgb for c in crops])).permute(0, 3, 1, 2)
        tgt = torch.from_numpy(np.stack([generator_targets(c.labels, centre=centre)
                                        for c in crops]))
        valid = torch.from_numpy(np.stack([c.valid for c in crops]))
        with autocast_context(device, cfg.bf16):
            logits = generator(x.contiguous().to(device))
        loss = generator_loss(logits.float(), tgt.to(device), valid.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(generator.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        total, n = total + float(loss.detach()), n + 1
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            rec = {"stage": "generator", "step": step + 1, "loss": round(total / n, 5),
                   "lr": opt.param_groups[0]["lr"],
                   "seconds": round(time.perf_counter() - t0, 2)}
            history.append(rec)
            if log is not None:
                log(rec)
            total, n, t0 = 0.0, 0, time.perf_counter()
    generator.eval()
    return history
