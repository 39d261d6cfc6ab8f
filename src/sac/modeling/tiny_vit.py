"""TinyViT image encoder in the layout of MobileSAM (``vit_t``) and LiteMedSAM checkpoints.

A convolutional stage (MBConv blocks) is followed by windowed-attention stages; each attention
block adds a learned per-head bias indexed by the relative offset of two tokens in a window. The
state-dict names (``patch_embed.seq``, ``layers.i.blocks.j``, ``neck``) follow the checkpoints so
they load with ``strict=True``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sac.modeling.common import LayerNorm2d


@dataclass(frozen=True)
class TinyViTConfig:
    """Architecture hyper-parameters. Defaults are LiteMedSAM's encoder (256x256 in, 64x64 out)."""

    img_size: int = 256
    in_chans: int = 3
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    merge_strides: tuple[int, ...] = (2, 2, 1)  # stride of the patch merging after stage i
    patch_kernel: int = 1  # LiteMedSAM: 1x1 convs; MobileSAM: 3x3
    patch_stride: int = 1  # per conv of the two-conv patch embedding
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    out_chans: int = 256
    num_classes: int = 0  # > 0 keeps MobileSAM's unused classifier head so its checkpoints load


class Conv2dBN(nn.Sequential):
    """Convolution without bias followed by BatchNorm (keys ``c`` and ``bn``)."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2,
                                       groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))


class PatchEmbed(nn.Module):
    """Two conv-BN layers with a GELU between them; downsamples by ``stride**2``."""

    def __init__(self, cin: int, dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(cin, dim // 2, kernel, stride),
            nn.GELU(),
            Conv2dBN(dim // 2, dim, kernel, stride),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.conv2 = Conv2dBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = Conv2dBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(x + self.conv3(y))


class PatchMerging(nn.Module):
    """Channel change and (optional) 2x downsampling between stages; NCHW in and out."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


class ConvLayer(nn.Module):
    """First stage: MBConv blocks then patch merging (NCHW)."""

    def __init__(self, dim: int, depth: int, expand: float, out_dim: int, stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class TinyViTAttention(nn.Module):
    """Multi-head attention with a learned bias per head and relative offset within a window.

    The fused ``qkv`` projection is laid out per head as ``[q (kd) | k (kd) | v (kd)]``;
    :meth:`qv_rows` tells LoRA which output rows are queries and values.
    """

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * self.key_dim * num_heads)
        self.proj = nn.Linear(self.key_dim * num_heads, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p in points:
            for q in points:
                off = (abs(p[0] - q[0]), abs(p[1] - q[1]))
                idxs.append(offsets.setdefault(off, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        n = len(points)
        self.register_buffer(
            "attention_bias_idxs", torch.tensor(idxs, dtype=torch.long).view(n, n), persistent=False
        )

    def qv_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Row indices of the query and value outputs inside ``qkv``."""
        kd, chunk = self.key_dim, 3 * self.key_dim
        base = torch.arange(self.num_heads)[:, None] * chunk
        q = (base + torch.arange(kd)).flatten()
        v = (base + 2 * kd + torch.arange(kd)).flatten()
        return q, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3, self.key_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)
        # Plain matmul-softmax-matmul: for these 49-token windows it is 2-4x faster on CPU than
        # scaled_dot_product_attention with a bias mask (fp32 and bf16, forward and backward).
        attn = (q * self.key_dim**-0.5) @ k.transpose(-2, -1) + bias
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class TinyViTMlp(nn.Module):
    """LayerNorm then a two-layer GELU MLP (``norm``, ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention (zero-padded to whole windows), depthwise 3x3 conv, MLP. NHWC in and out."""

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.attn = TinyViTAttention(dim, num_heads, window)
        self.mlp = TinyViTMlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, 3, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws = self.window
        pad_b, pad_r = (-h) % ws, (-w) % ws
        y = F.pad(x, (0, 0, 0, pad_r, 0, pad_b)) if pad_b or pad_r else x
        ph, pw = h + pad_b, w + pad_r
        y = y.view(b, ph // ws, ws, pw // ws, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
        y = self.attn(y)
        y = y.view(b, ph // ws, pw // ws, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        x = x + y[:, :h, :w]
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """An attention stage: TinyViT blocks then an optional patch merging (NHWC in and out)."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float,
        out_dim: int | None, stride: int,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window, mlp_ratio) for _ in range(depth)
        )
        self.downsample = PatchMerging(dim, out_dim, stride) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x


class TinyViT(nn.Module):
    """TinyViT image encoder returning a (B, out_chans, H/16', W/16') embedding."""

    def __init__(self, cfg: TinyViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.img_size = cfg.img_size
        dims, n = cfg.embed_dims, len(cfg.embed_dims)
        self.patch_embed = PatchEmbed(cfg.in_chans, dims[0], cfg.patch_kernel, cfg.patch_stride)
        layers: list[nn.Module] = [ConvLayer(
            dims[0], cfg.depths[0], cfg.mbconv_expand_ratio, dims[1], cfg.merge_strides[0]
        )]
        for i in range(1, n):
            last = i == n - 1
            layers.append(BasicLayer(
                dims[i], cfg.depths[i], cfg.num_heads[i], cfg.window_sizes[i], cfg.mlp_ratio,
                None if last else dims[i + 1], 1 if last else cfg.merge_strides[i],
            ))
        self.layers = nn.ModuleList(layers)
        if cfg.num_classes > 0:
            self.norm_head = nn.LayerNorm(dims[-1])
            self.head = nn.Linear(dims[-1], cfg.num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], cfg.out_chans, 1, bias=False),
            LayerNorm2d(cfg.out_chans),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, 3, padding=1, bias=False),
            LayerNorm2d(cfg.out_chans),
        )

    @property
    def embedding_size(self) -> int:
        """Side length of the output embedding grid."""
        size = self.img_size
        for _ in range(2):
            size = (size - 1) // self.cfg.patch_stride + 1
        for s in self.cfg.merge_strides[: len(self.cfg.embed_dims) - 1]:
            size = (size - 1) // s + 1
        return size

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding and the convolutional stage (carries no attention, hence no LoRA)."""
        return self.layers[0](self.patch_embed(x)).permute(0, 2, 3, 1)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Attention stages and neck, from the NHWC output of :meth:`stem`."""
        for layer in self.layers[1:]:
            x = layer(x)
        return self.neck(x.permute(0, 3, 1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.stem(x))
