"""Tiles over a whole slide or a region of it, each owning a core so that cores partition it.

The layout and the ownership rule are those of :mod:`sac.core.tiles` (tile starts of
:func:`~sac.core.tiles.make_tiles`; between two overlapping neighbours the cut is the
middle of their overlap), applied to the region, so the whole-slide path cuts exactly where
the in-memory path does on the same pixels. A result computed on a tile is kept only inside
its core; every region pixel lies in exactly one core.

Coordinates: ``dimensions`` and ``region`` are level-0 pixels. With ``downsample`` > 1 (to
process a lower-resolution pyramid level, e.g. 2.0 for 20x from a 40x slide) the grid is laid
out in that level's pixels: a tile's ``x``, ``y``, ``size`` and ``core`` are level pixels,
``location`` is the level-0 corner to pass to ``SlideReader.read_region(*location, size, size,
level)``, and ``bounds0`` the tile's level-0 box (e.g. for
:func:`~sac.slides.tissue.tile_has_tissue`).

A tile's window may reach past the region (it keeps its full size; the pixels are real slide
context) and past the slide, where the reader returns white.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sac.core.errors import ConfigError, InputError
from sac.core.tiles import owned_tiles


@dataclass(frozen=True)
class SlideTile:
    """One tile: its window, the core it owns, and a stable id for resuming."""

    id: str  # from the tile's level-0 corner, size and downsample: the same for the same grid
    index: int  # position in row-major order
    x: int  # window corner and size, in the pixels of the processed level
    y: int
    size: int
    core: tuple[int, int, int, int]  # owned (x0, y0, x1, y1), half-open, level pixels
    location: tuple[int, int]  # the window's corner in level-0 pixels, for read_region
    downsample: float = 1.0

    @property
    def core_slices(self) -> tuple[slice, slice]:
        """(rows, cols) of the core within the tile's (size, size) array."""
        x0, y0, x1, y1 = self.core
        return slice(y0 - self.y, y1 - self.y), slice(x0 - self.x, x1 - self.x)

    @property
    def bounds0(self) -> tuple[int, int, int, int]:
        """The window as (x, y, w, h) in level-0 pixels."""
        side = math.ceil(self.size * self.downsample)
        return self.location[0], self.location[1], side, side


def check_region(
    dimensions: tuple[int, int], region: tuple[int, int, int, int] | None
) -> tuple[int, int, int, int]:
    """The region (x, y, w, h) clipped to the slide; the whole slide when None.

    InputError when it is empty or lies wholly outside the slide (the message gives the slide
    size); a region reaching past an edge is cut at that edge.
    """
    width, height = (int(v) for v in dimensions)
    if region is None:
        return 0, 0, width, height
    x, y, w, h = (int(v) for v in region)
    if w < 1 or h < 1:
        raise InputError(f"region {x} {y} {w} {h}: width and height must be positive "
                         "(--region x y w h, in level-0 pixels)")
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"region {x} {y} {w} {h} lies outside the slide, which is {width} x "
                         f"{height} pixels (x 0..{width - 1}, y 0..{height - 1}, level 0); "
                         "give --region x y w h inside it")
    return x0, y0, x1 - x0, y1 - y0


def slide_tiles(
    dimensions: tuple[int, int],
    tile: int,
    overlap: int,
    region: tuple[int, int, int, int] | None = None,
    *,
    downsample: float = 1.0,
) -> list[SlideTile]:
    """Overlapping ``tile`` x ``tile`` windows over the slide or ``region``, in row-major order.

    ``dimensions`` is the slide's level-0 (width, height); ``region`` (x, y, w, h) in level-0
    pixels (see :func:`check_region`); ``downsample`` the processed level's (see the module
    docstring). Cores partition the region at that level.
    """
    if tile < 1:
        raise ConfigError(f"tile size must be >= 1 pixel; got {tile}")
    if not 0 <= overlap < tile:
        raise ConfigError(f"overlap must be in [0, tile size); got {overlap} for tile {tile}")
    if not (math.isfinite(downsample) and downsample >= 1.0):
        raise ConfigError(f"downsample must be >= 1; got {downsample}")
    x, y, w, h = check_region(dimensions, region)
    gx0, gy0 = math.floor(x / downsample), math.floor(y / downsample)
    gw = math.ceil((x + w) / downsample) - gx0
    gh = math.ceil((y + h) / downsample) - gy0
    out = []
    for index, owned in enumerate(owned_tiles((gh, gw), tile, overlap)):
        rows, cols = owned.image
        tx, ty = gx0 + owned.tile.x0, gy0 + owned.tile.y0
        location = (_to_level0(tx, downsample), _to_level0(ty, downsample))
        suffix = "" if downsample == 1.0 else f"_d{downsample:g}"
        out.append(SlideTile(
            id=f"x{location[0]}_y{location[1]}_s{tile}{suffix}",
            index=index, x=tx, y=ty, size=tile,
            core=(gx0 + cols.start, gy0 + rows.start, gx0 + cols.stop, gy0 + rows.stop),
            location=location, downsample=float(downsample),
        ))
    return out


def _to_level0(v: int, downsample: float) -> int:
    """Level-0 coordinate that the readers map back to level pixel ``v`` (floor(c / ds) == v)."""
    return v if downsample == 1.0 else math.ceil(v * downsample)
