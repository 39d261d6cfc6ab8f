"""Stage 4, prompt sets to masks: windowed SAM decoding, one SAM tile at a time.

Images are cut into overlapping tiles at their own scale, each embedded in one pass of the
encoder (:func:`encoder_tile`, up to :data:`sac.core.tiles.ENCODER_TILE` px: far fewer pixels
encoded than in model-sized tiles with their overlaps). Each prompt set is decoded in
the one tile where its extent sits furthest from a seam (:func:`sac.core.tiles.assign_boxes`),
on a window of that tile's embedding around it, so a nucleus crossing a seam still comes out
whole. SAC and the zero-shot baseline share this loop. The paper's semantic mask is decoded
on the same embeddings, in model-sized windows (:func:`semantic_mask`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sac.core.labels import InstanceMask
from sac.core.tiles import ENCODER_MULTIPLE, OwnedTile, assign_boxes, owned_tiles
from sac.model.config import PromptConfig, Thresholds
from sac.pipeline.maps import Maps
from sac.pipeline.prompt_sets import semantic_set
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


def semantic_mask(predictor: SamPredictor, det: np.ndarray, maps: Maps,
                  region: tuple[slice, slice], window: int, overlap: int, cfg: PromptConfig,
                  th: Thresholds, clicks: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> np.ndarray:
    """The paper's output over the predictor's current tile (``region`` of the image): in
    model-sized windows of its embedding (``window`` px, overlapping by ``overlap``), each
    decoded from one prompt set holding all its nuclei (``det``, ``maps``: the whole image's)
    and the ``clicks`` there (points ``(x, y)`` in image pixels, labels), stitched by ownership,
    and kept where the generator also sees nucleus (foreground >= ``th.fg``) or a nucleus was
    detected.

    The tile is encoded once however large (the windows are cut from its embedding, as for
    the nuclei), so the semantic mask costs no extra encoder passes. Decoded from one big
    pass it spreads a little further than from model-sized tiles; the generator's agreement
    trims that (DSB 2018, 40 validation images: AJI 0.7727 -> 0.7793, DSB score 0.5801 ->
    0.5832, against 0.7743 / 0.5850 from model-sized tiles).
    """
    ys, xs = region
    h, w = ys.stop - ys.start, xs.stop - xs.start
    out = np.zeros((h, w), bool)
    for sub in owned_tiles((h, w), window, overlap):
        sy, sx = sub.tile.slices((h, w))
        crop = (slice(ys.start + sy.start, ys.start + sy.stop),
                slice(xs.start + sx.start, xs.start + sx.stop))
        s = semantic_set(det[crop], maps.crop(*crop), cfg, th)
        pts, lbl = s.points, s.labels
        if clicks is not None and len(clicks[0]):
            local = clicks[0] - np.array([crop[1].start, crop[0].start], np.float32)
            inside = (local >= 0).all(1) & (local[:, 0] < sx.stop - sx.start) & \
                (local[:, 1] < sy.stop - sy.start)
            pts = np.concatenate([pts, local[inside]]).astype(np.float32)
            lbl = np.concatenate([lbl, clicks[1][inside]])
        if not (lbl == 1).any():
            continue
        corner = np.array([sx.start, sy.start], np.float32)
        box = np.concatenate([corner, corner + window])[None]
        mask = predictor.predict_instances(points=(pts + corner)[None], labels=lbl[None],
                                           window=predictor.native_grid, extents=box)[0]
        if mask is not None:
            _paste_owned(out, mask, sub.image)
    return out & ((maps.fg[ys, xs] >= th.fg) | (det[ys, xs] > 0))


def _paste_owned(out: np.ndarray, mask: InstanceMask, owned: tuple[slice, slice]) -> None:
    """Copy the part of ``mask`` inside the ``owned`` region into ``out``."""
    (oy, ox), (mh, mw) = owned, mask.mask.shape
    y0, x0 = max(mask.y0, oy.start), max(mask.x0, ox.start)
    y1, x1 = min(mask.y0 + mh, oy.stop), min(mask.x0 + mw, ox.stop)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = mask.mask[y0 - mask.y0 : y1 - mask.y0, x0 - mask.x0 : x1 - mask.x0]
