"""The auto-prompt generator: a compact U-Net predicting where the nuclei are.

SAM needs prompts; the generator supplies them. From an RGB tile it predicts three maps whose
post-processing (:mod:`sac.pipeline.prompts`) gives one point or box per nucleus:

* channel 0, ``fg``: nucleus foreground;
* channel 1, ``boundary``: a thin ring at each instance's edge, which separates touching nuclei;
* channel 2, ``centre``: a Gaussian blob at each nucleus centre, whose peaks become the prompts.

A generator with ``hv=True`` predicts HoVer-Net's horizontal and vertical maps (each pixel's
offset from its nucleus's centre, in [-1, 1]) in channels 2 and 3 instead of the centre map;
:func:`map_probabilities` turns them into a centre map that peaks where both offsets are 0,
so everything downstream sees the same three maps.

The network is deliberately small (a few hundred thousand parameters): it runs once per tile next
to a SAM encoder that costs over a second on a CPU, so it must add little.

With ``embed_chans`` > 0 the generator also reads SAM's image embedding of the same tile, as in
the SAC paper: a 1x1 convolution projects it onto the U-Net's features at ``embed_level``
(stride ``2**embed_level``; LiteMedSAM's 256-px input gives a 64x64 embedding, stride 4), where
it is added. ``benchmarks/embedding_probe.py`` measures what that does to detection; the
segmentation pipeline does not build such generators yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CHANNELS = ("fg", "boundary", "centre")


@dataclass(frozen=True)
class GeneratorConfig:
    """Layer widths of the U-Net; ``len(widths) - 1`` is the number of 2x down-samplings.
    ``hv``: the head predicts horizontal and vertical maps instead of a centre map (one more
    output channel than ``out_chans``)."""

    in_chans: int = 3
    widths: tuple[int, ...] = (16, 32, 64, 128)
    out_chans: int = 3
    groups: int = 8
    hv: bool = False
    embed_chans: int = 0  # channels of a SAM image embedding also read (0: the image alone)
    embed_level: int = 2  # the U-Net level (stride 2**level) where the embedding is added

    @property
    def head_chans(self) -> int:
        """Output channels of the network: ``out_chans``, + 1 for the horizontal and vertical
        maps in place of the centre map."""
        return self.out_chans + 1 if self.hv else self.out_chans

    @property
    def stride(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (len(self.widths) - 1)


def _norm(chans: int, groups: int) -> nn.GroupNorm:
    """GroupNorm (batch-size independent, so batch 1 training and inference agree)."""
    g = groups
    while chans % g:
        g //= 2
    return nn.GroupNorm(max(g, 1), chans)


class DoubleConv(nn.Sequential):
    """(3x3 conv, GroupNorm, ReLU) twice."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            _norm(cout, groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            _norm(cout, groups),
            nn.ReLU(inplace=True),
        )


class PromptGenerator(nn.Module):
    """U-Net from a (B, in_chans, H, W) image in [0, 1] to (B, head_chans, H, W) logits.

    H and W must be multiples of ``config.stride`` (8 for the default four widths); pad the
    tile otherwise (:func:`pad_to_stride`). Down path: double conv then 2x max-pool. Up path:
    1x1 conv to the skip's width, bilinear 2x up-sampling, concatenation with the skip at that
    scale, double conv. A 1x1 conv gives the logits. About 2.2 GMAC at 256 x 256.
    """

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or GeneratorConfig()
        if len(cfg.widths) < 1:
            raise ValueError("GeneratorConfig.widths needs at least one width")
        if cfg.embed_chans and not 0 <= cfg.embed_level < len(cfg.widths):
            raise ValueError(f"GeneratorConfig.embed_level must name one of the "
                             f"{len(cfg.widths)} levels; got {cfg.embed_level}")
        w = cfg.widths
        self.down = nn.ModuleList()
        cin = cfg.in_chans
        for cout in w:
            self.down.append(DoubleConv(cin, cout, cfg.groups))
            cin = cout
        # decoder stage i: a 1x1 conv narrows the deeper features (w[i + 1]) to w[i] at low
        # resolution, where it is cheap; after up-sampling they join the skip at scale i
        levels = list(reversed(range(len(w) - 1)))
        self.reduce = nn.ModuleList(nn.Conv2d(w[i + 1], w[i], 1) for i in levels)
        self.up = nn.ModuleList(DoubleConv(2 * w[i], w[i], cfg.groups) for i in levels)
        self.head = nn.Conv2d(w[0], cfg.head_chans, 1)
        self.embed: nn.Module | None = None
        if cfg.embed_chans:
            we = w[cfg.embed_level]
            self.embed = nn.Sequential(nn.Conv2d(cfg.embed_chans, we, 1, bias=False),
                                       _norm(we, cfg.groups), nn.ReLU(inplace=True))
        self._init_head()

    def _init_head(self) -> None:
        """Start from a low prior (~5 %) for each map: most pixels are background."""
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.constant_(self.head.bias, -3.0)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) image in [0, 1] (and, with ``embed_chans``, the tile's (B, E, h, w)
        SAM embedding) to (B, head_chans, H, W) logits."""
        skips = self.encode(x, embedding)
        x = skips.pop()
        for reduce, block in zip(self.reduce, self.up, strict=True):
            skip = skips.pop()
            x = F.interpolate(reduce(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)

    def encode(self, x: torch.Tensor, embedding: torch.Tensor | None = None
               ) -> list[torch.Tensor]:
        """The encoder's features at every level, finest first, for a (B, C, H, W) image in
        [0, 1] whose H and W are multiples of ``config.stride`` (and its SAM embedding, which
        a generator with ``embed_chans`` needs; it is resized to its level's grid)."""
        s = self.config.stride
        if x.shape[-2] % s or x.shape[-1] % s:
            raise ValueError(f"height and width must be multiples of {s}; got {tuple(x.shape)}")
        if (self.embed is None) != (embedding is None):
            raise ValueError("this generator " + ("reads" if self.embed is not None else
                             "does not read") + " a SAM image embedding")
        x = (x - 0.5) * 4.0  # centre the [0, 1] input; the GroupNorms take care of the rest
        levels: list[torch.Tensor] = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            if self.embed is not None and embedding is not None \
                    and i == self.config.embed_level:
                e = embedding.to(x.dtype)
                if e.shape[-2:] != x.shape[-2:]:
                    e = F.interpolate(e, size=x.shape[-2:], mode="bilinear",
                                      align_corners=False)
                x = x + self.embed(e)
            levels.append(x)
        return levels

    def style(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 2 * sum(widths)) summary of an image's texture: the mean and standard deviation
        over H and W of every encoder level's features. The scale of the structures in the
        image shows in it (cellpose regresses cell size on a similar style vector); see
        :mod:`sac.model.size_head`."""
        feats = self.encode(x, embedding)
        return torch.cat([t for f in feats for t in (f.mean((-2, -1)), f.std((-2, -1)))], 1)


def split_outputs(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sigmoid probabilities ``fg``, ``boundary``, ``centre``, each (B, H, W), from the logits."""
    if logits.ndim != 4 or logits.shape[1] < len(CHANNELS):
        raise ValueError(f"expected (B, >=3, H, W) logits; got {tuple(logits.shape)}")
    probs = torch.sigmoid(logits)
    return {name: probs[:, i] for i, name in enumerate(CHANNELS)}


#: px^-1: the horizontal (vertical) map must rise along x (y) at least this steeply for the
#: derived centre map to count fully there; a nucleus of diameter d rises at about 2 / d
HV_RISE = 0.05


def map_probabilities(logits: torch.Tensor, hv: bool = False) -> torch.Tensor:
    """(B, 3, H, W) foreground, boundary and centre maps in [0, 1] from the logits.

    Without ``hv`` these are the sigmoids of the three channels. With ``hv``, channels 2 and 3
    are the horizontal and vertical maps h and v (tanh, in [-1, 1]) and the centre map is
    ``fg * (1 - max(|h|, |v|))``, 1 where both offsets are 0, times how steeply h rises along
    x and v along y (up to :data:`HV_RISE`): at a nucleus's centre both rise, while where two
    nuclei meet the offsets fall from +1 to -1, and a smooth prediction that passes through 0
    there must not look like a centre. The result is unchanged by flips and transposes of the
    image (test-time augmentation), which negate or swap h and v.
    """
    if logits.ndim != 4 or logits.shape[1] < (4 if hv else 3):
        raise ValueError(f"expected (B, {4 if hv else 3}+, H, W) logits; got "
                         f"{tuple(logits.shape)}")
    probs = torch.sigmoid(logits[:, :2] if hv else logits[:, :3])
    if not hv:
        return probs
    h, v = torch.tanh(logits[:, 2:3]), torch.tanh(logits[:, 3:4])
    near = 1.0 - torch.maximum(h.abs(), v.abs())
    hp, vp = F.pad(h, (1, 1, 0, 0), mode="replicate"), F.pad(v, (0, 0, 1, 1), mode="replicate")
    rise_x = hp[..., 2:] - hp[..., :-2]  # central differences: 2 * dh/dx
    rise_y = vp[..., 2:, :] - vp[..., :-2, :]
    rise = (torch.minimum(rise_x, rise_y) / (2 * HV_RISE)).clamp(0.0, 1.0)
    return torch.cat([probs, probs[:, :1] * near * rise], 1)


def pad_to_stride(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad (..., H, W) at the bottom and right to multiples of ``stride``.

    Returns the padded tensor and the original (H, W) to crop the output back to.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x, (h, w)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
