"""Overlapping tiles over a large image: objects assigned to the tile that holds them best,
and per-tile maps stitched back into one image.

Each object (a box) is decoded in exactly one tile, the one where it sits furthest from the
tile's edges, so an object crossing a tile seam still comes out whole, never as two halves.

Stitching: with overlapping tiles, a pixel lies in up to four tiles; it is owned by the one
whose centre it is nearest along each axis (the cut between two neighbouring tiles is the middle
of their overlap). Tile borders, where convolutions see padding, are thus never used unless
they are the image border.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

#: default largest side (px, at the model's scale) of one encoder pass
ENCODER_TILE = 1024
#: the largest side a caller may ask for (memory grows with its square)
MAX_ENCODER_TILE = 2048
#: encoder inputs are padded to a multiple of this
ENCODER_MULTIPLE = 16


@dataclass(frozen=True)
class Tile:
    """A window ``[y0, y0 + size) x [x0, x0 + size)``; it may extend past the image border."""

    y0: int
    x0: int
    size: int

    def slices(self, shape: tuple[int, int]) -> tuple[slice, slice]:
        """Slices of the part inside an image of ``shape``."""
        return (slice(self.y0, min(self.y0 + self.size, shape[0])),
                slice(self.x0, min(self.x0 + self.size, shape[1])))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with tiles of ``tile`` overlapping by ``overlap``."""
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile size); got {overlap} for tile {tile}")
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def make_tiles(shape: tuple[int, int], tile: int, overlap: int) -> list[Tile]:
    """All tiles of an image of ``shape`` in row-major order."""
    return [Tile(y, x, tile) for y in tile_starts(shape[0], tile, overlap)
            for x in tile_starts(shape[1], tile, overlap)]


def assign_boxes(boxes: np.ndarray, tiles: list[Tile], shape: tuple[int, int]) -> np.ndarray:
    """Index of the tile for each (x0, y0, x1, y1) box: the tile with the largest margin.

    The margin is the smallest distance from the box to a tile edge that lies inside the image
    of ``shape`` (edges on or past the image border are no seam and do not count; negative when
    the box sticks out); ties go to the earlier tile. Vectorised over boxes x tiles.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    b = np.asarray(boxes, dtype=np.float64)
    ty = np.array([t.y0 for t in tiles], dtype=np.float64)
    tx = np.array([t.x0 for t in tiles], dtype=np.float64)
    ts = np.array([t.size for t in tiles], dtype=np.float64)
    inf = np.inf
    left = np.where(tx <= 0, inf, tx)
    top = np.where(ty <= 0, inf, ty)
    right = np.where(tx + ts >= shape[1], inf, tx + ts)
    bottom = np.where(ty + ts >= shape[0], inf, ty + ts)
    with np.errstate(invalid="ignore"):
        margin = np.minimum.reduce([
            b[:, None, 0] - np.where(np.isinf(left), -inf, left)[None],
            b[:, None, 1] - np.where(np.isinf(top), -inf, top)[None],
            right[None] - b[:, None, 2],
            bottom[None] - b[:, None, 3],
        ])
    return margin.argmax(axis=1)



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
    out: np.ndarray = np.zeros(shape, dtype)
    for owned, arr in parts:
        into: tuple[Any, ...] = (Ellipsis, *owned.image)
        part: tuple[Any, ...] = (Ellipsis, *owned.local)
        out[into] = arr[part]
    return out


#: px over which :func:`pad_faded` blends the mirrored margin into the image's median
PAD_FADE = 6


def pad_faded(image: np.ndarray, widths: tuple[tuple[int, int], tuple[int, int]],
              fade: int = PAD_FADE) -> np.ndarray:
    """``image`` (H, W[, C]) mirrored out by ``widths`` ((top, bottom), (left, right)), the
    margin blending linearly into the image's median colour within ``fade`` px of the edge.

    Why not a plain mirror: a nucleus cut by the edge comes back doubled, and where both long
    edges of a strip are mirrored, chains of touching mirrored nuclei appear that networks read
    as one bright band (a thin strip of nuclei then gives a weak map and loses all of them).
    Why not a constant: a fill right at the edge turns every cut nucleus into a hard-edged
    object of its own. The mirror keeps the edge's texture; the fade stops it there.
    """
    if not any(lo or hi for lo, hi in widths):  # every full-size tile: nothing to pad
        return image
    pads = list(widths) + [(0, 0)] * (image.ndim - 2)
    out = np.pad(image, pads, mode="symmetric").astype(np.float32)
    weight = np.ones(out.shape[:2], np.float32)
    for axis, (lo, hi) in enumerate(widths):
        n = out.shape[axis]
        dist = np.zeros(n, np.float32)  # px from the image, along this axis
        dist[:lo] = np.arange(lo, 0, -1)
        dist[n - hi:] = np.arange(1, hi + 1)
        keep = np.clip(1 - dist / (fade + 1), 0, 1)
        weight *= keep[:, None] if axis == 0 else keep[None, :]
    flat = image.reshape(-1, image.shape[2]) if image.ndim == 3 else image.reshape(-1)
    fill = np.median(flat, axis=0).astype(np.float32)
    if image.ndim == 3:
        weight = weight[..., None]
    out = weight * out + (1 - weight) * fill
    if image.dtype.kind in "iu":
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(image.dtype)
    return out.astype(image.dtype)
