"""Stage 4, prompt sets to masks: windowed SAM decoding, one SAM tile at a time.

Images are cut into overlapping tiles at their own scale, each embedded in one pass of the
encoder (:func:`encoder_tile`, up to :data:`sac.core.tiles.ENCODER_TILE` px: far fewer pixels
encoded than in model-sized tiles with their overlaps). Each prompt set is decoded in
the one tile where its extent sits furthest from a seam (:func:`sac.core.tiles.assign_boxes`),
on a window of that tile's embedding around it, so a nucleus crossing a seam still comes out
whole. SAC and the zero-shot baseline share this loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sac.core.labels import InstanceMask
from sac.core.tiles import ENCODER_MULTIPLE, OwnedTile, assign_boxes, owned_tiles
from sac.pipeline.prompts import PromptSet, batch_prompt_sets
from sac.pipeline.result import Clock
from sac.sam.predictor import SamPredictor

#: the smallest decoder window (embedding tokens a side) at inference: 12 decodes 1.8x faster
#: than the 16 the models train with at the same accuracy (``benchmarks/speed.py``)
DECODE_WINDOW = 12


def encoder_tile(shape: tuple[int, int], tile_size: int, overlap: int, native: int,
                 multiple: int = ENCODER_MULTIPLE) -> int:
    """The side of the square tiles an image of ``shape`` is encoded in: ``tile_size`` at most,
    the model's ``native`` input size at least, else as small as covers the image in as few
    tiles as ``tile_size`` would (so a 1100-px image takes four 592-px tiles, not four of 1024
    px); a multiple of ``multiple`` (the encoder's input step) where above ``native``."""
    cap = tile_size // multiple * multiple
    if cap <= native:
        return min(tile_size, native)
    side = max(shape)
    n = max(1, -(-(side - overlap) // (cap - overlap)))
    need = -(-(side + (n - 1) * overlap) // n)
    return max(native, min(cap, -(-need // multiple) * multiple))


@dataclass(frozen=True)
class EncodedTile:
    """A tile whose embedding the predictor now holds, and the prompt sets it decodes."""

    owned: OwnedTile
    chosen: np.ndarray  # indices of the prompt sets (extents) this tile decodes
    offset: np.ndarray  # (x, y) of the tile in the image, float32

    def region(self, shape: tuple[int, int]) -> tuple[slice, slice]:
        """The tile's slices within an image of ``shape``."""
        return self.owned.tile.slices(shape)


def encoded_tiles(predictor: SamPredictor, rgb: np.ndarray, extents: np.ndarray,
                  tile_size: int, overlap: int, every_tile: bool = False,
                  clock: Clock | None = None) -> Iterator[EncodedTile]:
    """Embed each tile of a float (H, W, 3) image that has prompt sets to decode (each tile
    with ``every_tile``) and yield it; ``extents`` (N, 4) ``x0, y0, x1, y1`` place the sets.
    Tiles larger than the model's input are embedded whole (see :func:`encoder_tile`)."""
    shape = rgb.shape[:2]
    native = predictor.spec.image_size
    tile_size = encoder_tile(shape, tile_size, overlap, native, predictor.encoder.multiple)
    big = tile_size if tile_size > native else None  # else the model-sized path
    tiles = owned_tiles(shape, tile_size, overlap)
    owner = assign_boxes(extents, [o.tile for o in tiles], shape)
    for k, owned in enumerate(tiles):
        chosen = np.flatnonzero(owner == k)
        if chosen.size == 0 and not every_tile:
            continue
        t = time.perf_counter()
        ys, xs = owned.tile.slices(shape)
        predictor.set_image(rgb[ys, xs], normalized=True, upscale=False, input_size=big)
        if clock is not None:
            clock.add("encoder", t)
        yield EncodedTile(owned, chosen, np.array([xs.start, ys.start], np.float32))


def decode_sets(predictor: SamPredictor, sets: list[PromptSet], extents: np.ndarray | None,
                offset: np.ndarray, window: int, batch_size: int,
                upsample: tuple[float, float] = (1.0, 1.0), threshold: float = 0.0
                ) -> list[InstanceMask]:
    """Masks of prompt sets (image pixels) on the predictor's current tile at ``offset``;
    empty masks are left out. ``upsample`` returns them on a finer grid, cut at mask logit
    ``threshold`` (see :meth:`SamPredictor.predict_instances`)."""
    masks = decode_each(predictor, sets, extents, offset, window, batch_size, upsample,
                        threshold)
    return [m for m in masks if m is not None]


def decode_each(predictor: SamPredictor, sets: list[PromptSet], extents: np.ndarray | None,
                offset: np.ndarray, window: int, batch_size: int,
                upsample: tuple[float, float] = (1.0, 1.0), threshold: float = 0.0
                ) -> list[InstanceMask | None]:
    """:func:`decode_sets` with one entry per set, ``None`` where its mask is empty."""
    pts, lbl, boxes = batch_prompt_sets(sets)
    has_points = pts.shape[1] > 0
    shift = np.tile(offset, 2)
    return predictor.predict_instances(
        points=pts - offset if has_points else None, labels=lbl if has_points else None,
        boxes=boxes - shift if boxes is not None else None, window=window,
        batch_size=batch_size, extents=extents - shift if extents is not None else None,
        offset=(float(offset[0]), float(offset[1])), upsample=upsample, threshold=threshold)
