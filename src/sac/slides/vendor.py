"""Slide backends on OpenSlide (openslide-python + the openslide-bin wheel) and tiffslide.

Both packages are optional (``pip install 'segment-any-cell[wsi]'``) and imported only when a
slide is opened with them; a missing package raises ModuleNotFoundError, which
:func:`sac.slides.reader.open_slide` turns into the next backend or an install hint.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sac.core.errors import InputError
from sac.slides.reader import RawSlide, SlideReader, check_slide_file

_WHITE = 255.0


def _mpp(properties: Any, key: str) -> float | None:
    """A positive float property, or None."""
    try:
        value = float(properties.get(key))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


class OpenSlideSlide(SlideReader):
    """SVS, NDPI, MRXS, SCN, VMS, BIF, Philips TIFF, generic tiled TIFF ... through OpenSlide.

    OpenSlide returns RGBA with transparent pixels outside the slide and where the scanner
    stored nothing; they are composited onto white. Its generic-TIFF reader takes pyramid
    levels only from successive pages, not from SubIFDs (use the tifffile backend for those).
    """

    backend = "openslide"

    def __init__(self, path: str | Path) -> None:
        import openslide  # ModuleNotFoundError when absent: open_slide tries another backend

        self.path = Path(path)
        check_slide_file(self.path)
        self._errors: tuple[type[BaseException], ...] = (openslide.OpenSlideError, OSError)
        try:
            self._slide: Any = openslide.OpenSlide(str(self.path))
            self.level_dimensions = tuple((int(d[0]), int(d[1]))
                                          for d in self._slide.level_dimensions)
            self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        except (*self._errors, ValueError) as exc:
            raise InputError(f"{self.path}: OpenSlide cannot open it ({type(exc).__name__}: "
                             f"{exc})") from exc
        self.mpp = _mpp(self._slide.properties, openslide.PROPERTY_NAME_MPP_X)
        self.vendor: str | None = self._slide.properties.get(openslide.PROPERTY_NAME_VENDOR)

    def _read_level(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        ds = self.level_downsamples[level]
        try:
            rgba = np.asarray(self._slide.read_region((round(lx * ds), round(ly * ds)), level,
                                                      (w, h)))
        except self._errors as exc:
            raise InputError(f"{self.path}: OpenSlide failed to read level {level} at "
                             f"({lx}, {ly}) ({exc}); the file is truncated or corrupt") from exc
        alpha = rgba[..., 3:4]
        if alpha.min() == 255:
            return np.ascontiguousarray(rgba[..., :3])
        a = alpha.astype(np.float32) / 255.0
        rgb = rgba[..., :3].astype(np.float32) * a + _WHITE * (1.0 - a)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

    def close(self) -> None:
        self._slide.close()


class TiffSlideSlide(RawSlide):
    """TIFF-based slides (SVS, NDPI, generic pyramidal TIFF ...) through tiffslide (zarr)."""

    backend = "tiffslide"

    def __init__(self, path: str | Path) -> None:
        import tiffslide  # ModuleNotFoundError when absent: open_slide tries another backend

        self.path = Path(path)
        check_slide_file(self.path)
        try:
            self._slide: Any = tiffslide.TiffSlide(self.path)
            self.level_dimensions = tuple((int(d[0]), int(d[1]))
                                          for d in self._slide.level_dimensions)
            self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        except Exception as exc:  # tifffile and zarr raise many types for bad files
            raise InputError(f"{self.path}: tiffslide cannot open it ({type(exc).__name__}: "
                             f"{exc})") from exc
        self.mpp = _mpp(self._slide.properties, "tiffslide.mpp-x")

    def _read_raw(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        # tiffslide maps a level-0 location to level pixel int(x / downsample); ceil(lx * ds)
        # lands on lx exactly for any downsample >= 1
        ds = self.level_downsamples[level]
        location = (math.ceil(lx * ds), math.ceil(ly * ds))
        try:
            arr = np.asarray(self._slide.read_region(location, level, (w, h), as_array=True,
                                                     padding=False))
        except Exception as exc:
            raise InputError(f"{self.path}: tiffslide failed to read level {level} at "
                             f"({lx}, {ly}) ({type(exc).__name__}: {exc}); the file is "
                             "truncated or corrupt") from exc
        if arr.shape[:2] != (h, w):
            raise InputError(f"{self.path}: tiffslide returned {arr.shape[:2]} for a {h}x{w} "
                             f"window of level {level}")
        return arr

    def close(self) -> None:
        self._slide.close()
