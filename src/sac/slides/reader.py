"""Whole-slide images: one reader interface over OpenSlide, tiffslide and tifffile.

A :class:`SlideReader` reads rectangular regions of a (possibly pyramidal) slide without
loading it whole, so slides of 100,000 x 80,000 pixels are processed in bounded memory.

Conventions (the same for every backend, modelled on OpenSlide):

- ``dimensions`` and ``level_dimensions`` are (width, height); level 0 is full resolution and
  ``level_downsamples[i]`` is level 0's size over level i's (mean of the x and y ratios);
- ``read_region(x, y, w, h, level)`` takes the top-left corner in **level-0** pixels and the
  size in pixels **of that level**; the corner is snapped down to the level's pixel grid (the
  region starts at level pixel ``floor(x / downsample)``); the result is RGB uint8 (h, w, 3);
- pixels outside the slide (negative coordinates, past the right or bottom edge) and pixels
  the file holds no data for (OpenSlide's transparent areas) are white (255, 255, 255), like
  an empty glass slide, so that tissue detection and stain heuristics treat them as background;
- pixel values become RGB uint8 by the rules of :func:`sac.data.images.to_rgb_uint8` (gray is
  repeated, alpha dropped, uint8 kept), except that non-uint8 data is scaled with **one**
  intensity range for the whole slide, not per region: the min and max of the
  lowest-resolution level, streamed in bands. For a single-level file that is exactly the
  image's range, so a region equals the same crop of ``sac.data.images.read_rgb``; for a
  pyramid it is an estimate, and values beyond it are clipped.

:func:`sac.slides.open.open_slide` picks a backend; see its docstring for the order.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType

import numpy as np

from sac.core.errors import InputError
from sac.core.images import scale_with_range, to_rgb_uint8

IN_MEMORY_SUFFIXES = (".png", ".jpg", ".jpeg")
BACKENDS = ("auto", "openslide", "tiffslide", "tifffile")
INSTALL_HINT = "pip install openslide-python openslide-bin"

_WHITE = 255
_BAND_BYTES = 32 * 2**20  # raw bytes per band when streaming a level for its intensity range


class SlideReader(ABC):
    """A whole-slide image open for reading; use as a context manager or call :meth:`close`.

    Subclasses set ``path``, ``level_dimensions``, ``level_downsamples`` and ``mpp`` in their
    constructor and implement :meth:`_read_level` and :meth:`close`.
    """

    path: Path
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: float | None  # micrometres per pixel at level 0 (x), or None when not recorded
    backend: str = "?"

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) of level 0."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def best_level_for_downsample(self, downsample: float) -> int:
        """The lowest-resolution level still at least as detailed as ``downsample`` asks.

        That is the level with the largest downsample <= ``downsample``; a 1 % tolerance lets
        a slide's 4.0003 count as 4. Downsamples below 1 give level 0.
        """
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if ds <= downsample * 1.01:
                best = i
        return best

    def read_region(self, x: int, y: int, w: int, h: int, level: int = 0) -> np.ndarray:
        """RGB uint8 (h, w, 3) region; (x, y) in level-0 pixels, (w, h) in ``level`` pixels.

        Parts outside the slide are white; see the module docstring.
        """
        if not 0 <= level < self.level_count:
            raise ValueError(f"level must be in [0, {self.level_count}); got {level}")
        if w < 1 or h < 1:
            raise ValueError(f"region size must be positive; got w={w}, h={h}")
        ds = self.level_downsamples[level]
        return self._read_level(level, math.floor(x / ds), math.floor(y / ds), int(w), int(h))

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """RGB uint8 image of the whole slide whose longer side is ``max_size`` (never enlarged).

        Read from the lowest-resolution level that is detailed enough, in bands of rows that
        are area-averaged as they come, so memory stays bounded even without a pyramid.
        """
        from skimage.transform import resize

        if max_size < 1:
            raise ValueError(f"max_size must be >= 1; got {max_size}")
        w0, h0 = self.dimensions
        scale = min(1.0, max_size / max(w0, h0))
        out_w, out_h = max(1, round(w0 * scale)), max(1, round(h0 * scale))
        level = self.best_level_for_downsample(1.0 / scale)
        lw, lh = self.level_dimensions[level]
        k = max(1, min(lw // out_w, lh // out_h))  # integer block size for streaming averages
        band = max(k, (8 * 2**20 // max(1, lw * 3)) // k * k)  # rows per band, a multiple of k
        rows = [_block_mean(self._read_level(level, 0, y, lw, min(band, lh - y)), k)
                for y in range(0, lh, band)]
        small = np.concatenate(rows, axis=0)
        if small.shape[:2] == (out_h, out_w):
            return small
        out = resize(small, (out_h, out_w), order=1, anti_aliasing=True, preserve_range=True)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    @abstractmethod
    def _read_level(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        """RGB uint8 (h, w, 3) window at level pixel (lx, ly); outside the level is white."""

    @abstractmethod
    def close(self) -> None:
        """Release the file; further reads fail. Closing twice is allowed."""

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return (f"{type(self).__name__}({str(self.path)!r}, {w}x{h}, levels={self.level_count}, "
                f"mpp={self.mpp})")


def _block_mean(rgb: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k blocks (the last, partial blocks average the pixels they have)."""
    if k == 1:
        return rgb
    starts_y, starts_x = np.arange(0, rgb.shape[0], k), np.arange(0, rgb.shape[1], k)
    sums = np.add.reduceat(np.add.reduceat(rgb.astype(np.float64), starts_y, 0), starts_x, 1)
    ny = np.diff(np.append(starts_y, rgb.shape[0]))
    nx = np.diff(np.append(starts_x, rgb.shape[1]))
    return np.rint(sums / (ny[:, None, None] * nx[None, :, None])).astype(np.uint8)


def downsamples_of(dims: tuple[tuple[int, int], ...]) -> tuple[float, ...]:
    """Level downsamples as OpenSlide computes them: mean of the width and height ratios."""
    w0, h0 = dims[0]
    return tuple((w0 / w + h0 / h) / 2.0 for w, h in dims)


class RawSlide(SlideReader):
    """Base for backends that return raw pixels (any dtype, 1-4 samples) of in-bounds windows.

    Subclasses implement :meth:`_read_raw`; this class adds the white fill outside the level
    and the slide-wide conversion to RGB uint8 described in the module docstring.
    """

    _range: tuple[float, float] | None = None

    @abstractmethod
    def _read_raw(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        """Raw (h, w) or (h, w, C) pixels of a window lying wholly inside the level."""

    def _read_level(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        out = np.full((h, w, 3), _WHITE, dtype=np.uint8)
        lw, lh = self.level_dimensions[level]
        x0, y0, x1, y1 = max(lx, 0), max(ly, 0), min(lx + w, lw), min(ly + h, lh)
        if x1 > x0 and y1 > y0:
            raw = self._read_raw(level, x0, y0, x1 - x0, y1 - y0)
            out[y0 - ly:y1 - ly, x0 - lx:x1 - lx] = self._to_rgb(raw)
        return out

    def _to_rgb(self, raw: np.ndarray) -> np.ndarray:
        """RGB uint8 by :func:`to_rgb_uint8`'s rules, with the slide's intensity range."""
        colour = _colour_channels(raw, str(self.path))
        if colour.dtype != np.uint8:
            colour = scale_with_range(colour, self.intensity_range(), str(self.path))
        return to_rgb_uint8(colour, source=str(self.path))

    def intensity_range(self) -> tuple[float, float]:
        """(min, max) of the colour channels of the lowest-resolution level (computed once)."""
        if self._range is None:
            level = self.level_count - 1
            lw, lh = self.level_dimensions[level]
            lo, hi = math.inf, -math.inf
            band = max(1, _BAND_BYTES // max(1, lw * 4 * 8))
            for y in range(0, lh, band):
                part = _colour_channels(self._read_raw(level, 0, y, lw, min(band, lh - y)),
                                        str(self.path))
                if part.dtype == np.uint8:
                    self._range = (0.0, 255.0)
                    return self._range
                part = part.astype(np.float64) if part.dtype == bool else part
                if np.issubdtype(part.dtype, np.floating) and not np.isfinite(part).all():
                    raise InputError(f"{self.path}: image contains NaN or infinite values; "
                                     "fix the file")
                lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
            self._range = (lo, hi)
        return self._range


def _colour_channels(raw: np.ndarray, source: str) -> np.ndarray:
    """Gray or RGB part of a raw window: gray+alpha keeps gray, RGBA drops alpha."""
    if raw.ndim == 3 and raw.shape[2] in (2, 4):
        return raw[..., : raw.shape[2] - 1]
    if raw.ndim == 2 or (raw.ndim == 3 and raw.shape[2] in (1, 3)):
        return raw
    raise InputError(f"{source}: unsupported slide pixel layout {raw.shape[2:]} samples per "
                     "pixel; expected gray, gray+alpha, RGB or RGBA")


class ArraySlide(RawSlide):
    """An image held in memory, seen as a one-level slide (PNG/JPEG files, tests, small images).

    The whole-slide code path then works on ordinary images too; the conversion equals
    :func:`sac.data.images.read_rgb` exactly.
    """

    backend = "memory"

    def __init__(self, image: np.ndarray, path: str | Path = "<array>",
                 mpp: float | None = None) -> None:
        arr = np.asarray(image)
        if arr.ndim not in (2, 3) or min(arr.shape[:2]) < 1:
            raise InputError(f"{path}: unsupported image shape {arr.shape}; expected (H, W) or "
                             "(H, W, C)")
        self._image: np.ndarray | None = arr
        self.path = Path(path)
        self.level_dimensions = ((int(arr.shape[1]), int(arr.shape[0])),)
        self.level_downsamples = (1.0,)
        self.mpp = mpp

    def _read_raw(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        if self._image is None:
            raise ValueError(f"{self.path}: slide is closed")
        return self._image[ly:ly + h, lx:lx + w]

    def close(self) -> None:
        self._image = None


def check_slide_file(path: Path) -> None:
    """Clear errors for a missing, non-regular or empty file before any backend sees it."""
    if not path.exists():
        raise InputError(f"{path}: file not found; check the path and that the data is in place")
    if not path.is_file():
        raise InputError(f"{path}: is not a regular file (a folder?); pass the slide file "
                         "(for MRXS, the .mrxs file next to its data folder)")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes); the copy or download was probably "
                         "interrupted, copy or download it again")
