"""Overlapping tiles over a large image, and assigning objects to the tile that holds them best.

Each object (a box) is decoded in exactly one tile, the one where it sits furthest from the
tile's edges, so an object crossing a tile seam still comes out whole, never as two halves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
