"""Stitching per-tile maps into one image: each pixel is taken from the tile that owns it.

With overlapping tiles, a pixel lies in up to four tiles; it is owned by the one whose centre
it is nearest along each axis (the cut between two neighbouring tiles is the middle of their
overlap). Tile borders, where convolutions see padding, are thus never used unless they are
the image border.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sac.inference.tiling import Tile, make_tiles


def _cuts(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """Owned ``[a, b)`` interval of each tile along one axis."""
    out = []
    for i, s in enumerate(starts):
        a = 0 if i == 0 else (starts[i - 1] + tile + s) // 2
        b = length if i == len(starts) - 1 else (s + tile + starts[i + 1]) // 2
        out.append((a, b))
    return out


@dataclass(frozen=True)
class OwnedTile:
    """A tile and the part of the image it owns, in image and in tile coordinates."""

    tile: Tile
    image: tuple[slice, slice]  # region of the image
    local: tuple[slice, slice]  # the same region within the tile


def owned_tiles(shape: tuple[int, int], tile: int, overlap: int) -> list[OwnedTile]:
    """Tiles of :func:`make_tiles` with the region each owns; the regions partition the image."""
    tiles = make_tiles(shape, tile, overlap)
    ys = sorted({t.y0 for t in tiles})
    xs = sorted({t.x0 for t in tiles})
    ycut = dict(zip(ys, _cuts(ys, tile, shape[0]), strict=True))
    xcut = dict(zip(xs, _cuts(xs, tile, shape[1]), strict=True))
    out = []
    for t in tiles:
        (y0, y1), (x0, x1) = ycut[t.y0], xcut[t.x0]
        out.append(OwnedTile(t, (slice(y0, y1), slice(x0, x1)),
                             (slice(y0 - t.y0, y1 - t.y0), slice(x0 - t.x0, x1 - t.x0))))
    return out


def stitch(parts: Iterator[tuple[OwnedTile, np.ndarray]], shape: tuple[int, ...],
           dtype: type = np.float32) -> np.ndarray:
    """Paste each tile's array (tile-sized in its last two axes) into its owned region."""
    out = np.zeros(shape, dtype)
    for owned, arr in parts:
        out[(..., *owned.image)] = arr[(..., *owned.local)]
    return out
