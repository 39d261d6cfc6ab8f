"""A stand-in prompt generator for tests: computes its maps from image brightness.

It isolates the inference pipeline (tiling, stitching, prompting, merging) from generator
training: bright disks on a dark background become foreground, and a blurred copy of the
foreground peaks at each disk's centre.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sac.modeling.generator import GeneratorConfig


class OracleGenerator(nn.Module):
    """Maps from brightness: foreground above ``level``, centres from repeated blurring."""

    def __init__(self, level: float = 0.55) -> None:
        super().__init__()
        self.config = GeneratorConfig()
        self.level = level
        self.dummy = nn.Parameter(torch.zeros(1))  # gives the module a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = torch.sigmoid((x.mean(1, keepdim=True) - self.level) * 60)
        c = fg
        for _ in range(4):
            c = F.avg_pool2d(c, 9, stride=1, padding=4, count_include_pad=True)
        c = c * fg
        peak = F.max_pool2d(c, 31, stride=1, padding=15).clamp(min=1e-3)
        centre = (c / peak).clamp(1e-4, 1 - 1e-4)
        boundary = torch.full_like(fg, 1e-4)
        probs = torch.cat([fg.clamp(1e-4, 1 - 1e-4), boundary, centre], 1)
        return torch.logit(probs)

    def style(self, x: torch.Tensor) -> torch.Tensor:
        """A constant 8-value style vector: size heads in tests are stand-ins that ignore it."""
        return torch.zeros(x.shape[0], 8)
