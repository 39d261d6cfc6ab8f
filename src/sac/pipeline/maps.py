"""Stage 1, image to generator maps: the prompt generator over large overlapping tiles.

The generator predicts, per pixel, nucleus foreground, nucleus boundary and distance-to-centre
probabilities; tiles are stitched by ownership (:func:`sac.core.tiles.stitch`), so every pixel
comes from the tile where it is furthest from an edge. With ``tta`` > 1 each tile's
probabilities are the mean over that many flips and transposes of it (test-time augmentation;
see ``benchmarks/tta.py`` for what it buys).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sac.core.device import autocast_context
from sac.core.tiles import owned_tiles, pad_faded, stitch
from sac.modeling.generator import PromptGenerator, map_probabilities, pad_to_stride

#: smallest generator tile (px); larger SAM tiles make it larger
GENERATOR_TILE = 512
#: px of overlap between generator tiles
GENERATOR_OVERLAP = 64
#: px: thinner generator tiles are mirrored out to this size
GENERATOR_MIN = 64
#: test-time augmentations: the tile alone, + its left-right flip, + up-down flips, + the
#: same four of its transpose (the dihedral group of the square)
TTA_CHOICES = (1, 2, 4, 8)
_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


@dataclass
class Maps:
    """Generator probabilities for one image or tile, each float32 (H, W) in [0, 1]."""

    fg: np.ndarray
    boundary: np.ndarray
    centre: np.ndarray

    def crop(self, ys: slice, xs: slice) -> Maps:
        return Maps(self.fg[ys, xs], self.boundary[ys, xs], self.centre[ys, xs])


@torch.no_grad()
def generator_maps(generator: PromptGenerator, rgb: np.ndarray, tile: int, device: torch.device,
                   bf16: bool = False, tta: int = 1) -> Maps:
    """Stitched generator probabilities for a float (H, W, 3) image, in tiles of ``tile`` px,
    each the mean over ``tta`` flipped/transposed views (one of :data:`TTA_CHOICES`)."""
    if tta not in TTA_CHOICES:
        raise ValueError(f"tta must be one of {TTA_CHOICES}; got {tta}")
    parts = []
    for owned in owned_tiles(rgb.shape[:2], tile, GENERATOR_OVERLAP):
        ys, xs = owned.tile.slices(rgb.shape[:2])
        crop = rgb[ys, xs]
        h, w = crop.shape[:2]
        # a thin tile is padded out to GENERATOR_MIN px: zero padding alone looks like a dark
        # object to the network (it then finds nothing in a 12-px strip), a plain mirror
        # chains nuclei cut by both edges into one band; a mirror faded to the median does not
        crop = pad_faded(crop, ((0, max(0, GENERATOR_MIN - h)), (0, max(0, GENERATOR_MIN - w))))
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
        x, _ = pad_to_stride(x.to(device), generator.config.stride)
        with autocast_context(device, bf16):
            probs = averaged_probs(generator, x, tta)[:, :h, :w].cpu().numpy()
        full = np.zeros((3, tile, tile), np.float32)
        full[:, :h, :w] = probs
        parts.append((owned, full))
    out = stitch(iter(parts), (3, *rgb.shape[:2]))
    return Maps(out[0], out[1], out[2])


def averaged_probs(generator: PromptGenerator, x: torch.Tensor, tta: int = 1) -> torch.Tensor:
    """Maps (3, H, W) in [0, 1] of one image ``x`` (1, 3, H, W)
    (:func:`sac.modeling.generator.map_probabilities`), averaged over ``tta`` views: each view
    is flipped/transposed, run in one batch with the others, and turned back."""
    flips = _FLIPS[: min(tta, 4)]
    total = torch.zeros((), device=x.device)
    for transposed in (False, True)[: 2 if tta == 8 else 1]:
        base = x.transpose(-1, -2) if transposed else x
        batch = torch.cat([base.flip(f) if f else base for f in flips])
        probs = map_probabilities(generator(batch).float(), generator.config.hv)
        for k, f in enumerate(flips):
            view = probs[k].flip(f) if f else probs[k]
            total = total + (view.transpose(-1, -2) if transposed else view)
    return total / tta
