"""SAM's ViT image encoder (ViT-B/L/H): windowed and global attention with decomposed
relative positions, absolute position embedding and a convolutional neck.

Parameter names follow Meta's checkpoints (``patch_embed.proj``, ``pos_embed``,
``blocks.i.attn.qkv``, ``blocks.i.attn.rel_pos_h``, ``neck.k``) so they load with ``strict=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sac.modeling.common import LayerNorm2d, MLPBlock


@dataclass(frozen=True)
class ViTConfig:
    """Architecture hyper-parameters; defaults are ViT-B at 1024x1024."""

    img_size: int = 1024
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    out_chans: int = 256
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)


def _relative_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Gather relative-position embeddings (q_size, k_size, C), resampling the table if needed."""
    n = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != n:
        rel_pos = F.interpolate(rel_pos.T[None], size=n, mode="linear")[0].T
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    rel = q_coords - k_coords + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[rel.long()]


class ViTAttention(nn.Module):
    """Multi-head attention over a (B, H, W, C) grid with decomposed relative position bias.

    The fused ``qkv`` projection is laid out as ``[q (all heads) | k | v]``.
    """

    def __init__(self, dim: int, num_heads: int, grid: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid - 1, self.head_dim))

    def qv_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Row indices of the query and value outputs inside ``qkv``."""
        dim = self.num_heads * self.head_dim
        return torch.arange(dim), torch.arange(2 * dim, 3 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        n, nh, hd = h * w, self.num_heads, self.head_dim
        q, k, v = self.qkv(x).view(b, n, 3, nh, hd).permute(2, 0, 3, 1, 4).unbind(0)
        rh = _relative_table(h, h, self.rel_pos_h).to(q.dtype)
        rw = _relative_table(w, w, self.rel_pos_w).to(q.dtype)
        gq = q.reshape(b, nh, h, w, hd)
        bias_h = torch.einsum("bnhwc,hkc->bnhwk", gq, rh)
        bias_w = torch.einsum("bnhwc,wkc->bnhwk", gq, rw)
        bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(b, nh, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class ViTBlock(nn.Module):
    """Pre-norm transformer block; attention is windowed (zero-padded) unless ``window == 0``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window: int, grid: int) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = ViTAttention(dim, num_heads, window if window > 0 else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window > 0:
            b, h, w, c = x.shape
            ws = self.window
            pad_b, pad_r = (-h) % ws, (-w) % ws
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
            ph, pw = h + pad_b, w + pad_r
            x = x.view(b, ph // ws, ws, pw // ws, ws, c).transpose(2, 3).reshape(-1, ws, ws, c)
            x = self.attn(x)
            x = x.view(b, ph // ws, pw // ws, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
            x = x[:, :h, :w]
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection to an NHWC grid (key ``proj``)."""

    def __init__(self, patch: int, cin: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoderViT(nn.Module):
    """SAM ViT encoder returning a (B, out_chans, img/16, img/16) embedding."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.img_size = cfg.img_size
        grid = cfg.img_size // cfg.patch_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, cfg.embed_dim))
        self.blocks = nn.ModuleList(
            ViTBlock(
                cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio,
                0 if i in cfg.global_attn_indexes else cfg.window_size, grid,
            )
            for i in range(cfg.depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(cfg.embed_dim, cfg.out_chans, 1, bias=False),
            LayerNorm2d(cfg.out_chans),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, 3, padding=1, bias=False),
            LayerNorm2d(cfg.out_chans),
        )

    @property
    def embedding_size(self) -> int:
        """Side length of the output embedding grid."""
        return self.img_size // self.cfg.patch_size

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding plus absolute positions (no attention, hence no LoRA)."""
        return self.patch_embed(x) + self.pos_embed

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Transformer blocks and neck, from the NHWC output of :meth:`stem`."""
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.stem(x))
