"""Whole slides in napari: a reader that opens them as multiscale images read region by region,
and the region of such a layer to segment (a drawn rectangle, or what is on screen)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from sac.data.images import SLIDE_SUFFIXES, TIFF_SUFFIXES

MAX_REGION_PIXELS = 4096 * 4096  # a region segmented in the viewer, at level 0


class LevelArray:
    """One pyramid level as a lazy (H, W, 3) uint8 array: indexing reads only that region."""

    def __init__(self, slide: Any, level: int, lock: threading.Lock) -> None:
        self.slide, self.level, self.lock = slide, level, lock
        w, h = slide.level_dimensions[level]
        self.shape = (h, w, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3
        self.size = h * w * 3

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        rows, cols = (k if isinstance(k, slice) else slice(int(k), int(k) + 1) for k in key[:2])
        (y0, y1, sy), (x0, x1, sx) = rows.indices(self.shape[0]), cols.indices(self.shape[1])
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(0, y1 - y0), max(0, x1 - x0), 3), np.uint8)[::sy, ::sx][
                (slice(None), slice(None), key[2])]
        ds = self.slide.level_downsamples[self.level]
        with self.lock:
            block = self.slide.read_region(round(x0 * ds), round(y0 * ds), x1 - x0, y1 - y0,
                                           level=self.level)
        out = block[::sy, ::sx][:, :, key[2]]
        squeeze = tuple(0 for k in key[:2] if not isinstance(k, slice))
        return out[squeeze] if squeeze else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[:, :]
        return arr.astype(dtype) if dtype is not None else arr


def get_reader(path: str | list[str]) -> Any:
    """npe2 reader hook: whole-slide files (and pyramidal TIFFs) as a multiscale image."""
    if isinstance(path, list) or not _slide_like(Path(path)):
        return None
    return read_slide


def _slide_like(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        return True
    if suffix not in TIFF_SUFFIXES:
        return False
    from sac.slides import open_slide

    try:
        with open_slide(path) as slide:
            return slide.level_count > 1  # plain TIFFs go to napari's own reader
    except Exception:
        return False


def read_slide(path: str) -> list[tuple[Any, dict[str, Any], str]]:
    """The slide's levels as one multiscale Image layer; ``metadata["sac_slide"]`` remembers
    the file for segmenting regions of it."""
    from sac.slides import open_slide

    slide = open_slide(path)
    lock = threading.Lock()
    levels = [LevelArray(slide, k, lock) for k in range(slide.level_count)]
    meta = {"name": Path(path).stem, "rgb": True, "multiscale": True,
            "metadata": {"sac_slide": str(path), "sac_mpp": slide.mpp}}
    return [(levels, meta, "image")]


def region_of(layer: Any, viewer: Any) -> tuple[int, int, int, int]:
    """(x, y, w, h) in level-0 pixels of a multiscale layer to segment: the last rectangle of
    a Shapes layer named ``region`` if there is one, else what is on screen."""
    h, w = layer.data[0].shape[:2]
    if "region" in viewer.layers and len(viewer.layers["region"].data):
        pts = np.asarray(viewer.layers["region"].data[-1])[:, -2:]
        world = pts * np.asarray(viewer.layers["region"].scale[-2:]) + np.asarray(
            viewer.layers["region"].translate[-2:])
        rc = (world - np.asarray(layer.translate[-2:])) / np.asarray(layer.scale[-2:])
        (r0, c0), (r1, c1) = rc.min(0), rc.max(0)
    else:
        corners = np.asarray(layer.corner_pixels)[:, :2]  # at the displayed level
        ds = layer.downsample_factors[layer.data_level][:2]
        (r0, c0), (r1, c1) = corners[0] * ds, (corners[1] + 1) * ds
    r0, c0 = max(0, int(r0)), max(0, int(c0))
    r1, c1 = min(h, int(np.ceil(r1))), min(w, int(np.ceil(c1)))
    if r1 <= r0 or c1 <= c0:
        raise ValueError("the region is empty or outside the slide")
    if (r1 - r0) * (c1 - c0) > MAX_REGION_PIXELS:
        raise ValueError(f"the region is {c1 - c0} x {r1 - r0} px at full resolution; zoom in "
                         "or draw a smaller rectangle (a Shapes layer named 'region'), or "
                         "segment the whole slide with sac segment")
    return c0, r0, c1 - c0, r1 - r0
