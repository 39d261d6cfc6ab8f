"""Pyramidal, tiled and plain TIFF slides read with tifffile, one tile (or strip) at a time.

Levels are tifffile's pyramid levels of the first image series: SubIFDs (OME-TIFF, tifffile's
own pyramids), reduced-resolution pages following the full image (OpenSlide's "generic tiled
TIFF", SVS) and the vendor layouts tifffile knows. A plain TIFF is a one-level slide.

A region is read by fetching and decoding only the tiles (or strips) it overlaps, straight from
their byte offsets (the pages' ``dataoffsets`` / ``databytecounts``) with tifffile's own
per-page decoder (``TiffPage.decode``, so every compression tifffile and imagecodecs support
works): no zarr needed, and memory is the region plus the decoded tiles it touches. Recently
decoded tiles are kept in a small cache (``cache_bytes``), since overlapping reads share tiles.
A non-tiled file saved as one big strip must still be decoded whole on each cache miss.
Opening decodes one tile of the smallest level, so an unsupported compression fails at once
(and :func:`~sac.slides.reader.open_slide` can try another backend).

Pixel size (``mpp``): OME ``PhysicalSizeX`` (with its unit), an Aperio ``MPP =`` entry in the
description, else the resolution tags (:func:`sac.data.images.read_pixel_size_um`). A value above
50 um per pixel is the nominal 72 or 300 dpi of a non-microscopy writer and is ignored (None).
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sac.core.errors import InputError
from sac.data.images import PLAUSIBLE_PIXEL_UM
from sac.slides.reader import RawSlide, check_slide_file, downsamples_of

_JPEG = {6, 7, 33007, 34892}  # compressions whose decoder takes JPEG tables
_OME_UM = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "\u03bcm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4,
           "m": 1e6}


class TiffFileSlide(RawSlide):
    """A TIFF file as a slide. ``plane`` picks the 2-D page within each level when a level has
    several (a channel of an OME-TIFF stored one channel per page, a z-plane, a time point)."""

    backend = "tifffile"

    def __init__(self, path: str | Path, plane: int = 0, cache_bytes: int = 64 * 2**20,
                 on_decode: Callable[[int, int], None] | None = None) -> None:
        """``on_decode(level, index)`` is told of every tile or strip decoded from the file
        (not served from the cache): a diagnostic of how much a read costs."""
        import tifffile

        self.on_decode = on_decode
        self.path = Path(path)
        check_slide_file(self.path)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int], np.ndarray | None] = OrderedDict()
        self._cache_bytes, self._cached = int(cache_bytes), 0
        try:
            self._tif: Any = tifffile.TiffFile(self.path)
        except Exception as exc:  # TiffFileError, struct.error, ValueError on corrupt headers
            raise InputError(f"{self.path}: not a readable TIFF ({type(exc).__name__}: {exc}); "
                             "the file is corrupt, truncated or of another format") from exc
        try:
            self._pages = self._level_pages(plane)
            self._layout = [_check_page(p, str(self.path)) for p in self._pages]
            self.level_dimensions = tuple((p.keyframe.imagewidth, p.keyframe.imagelength)
                                          for p in self._pages)
            self.level_downsamples = downsamples_of(self.level_dimensions)
            self.mpp = self._find_mpp()
            self._chunk(len(self._pages) - 1, 0)  # probe: fails now if the codec is unsupported
        except BaseException:
            self._tif.close()
            raise

    def _level_pages(self, plane: int) -> list[Any]:
        """The page holding ``plane`` in each pyramid level of the first series."""
        try:
            series = self._tif.series[0]
            levels = list(series.levels)
        except Exception as exc:
            raise InputError(f"{self.path}: cannot read the TIFF structure ({exc}); the file "
                             "is corrupt or truncated") from exc
        pages = []
        for i, level in enumerate(levels):
            if not 0 <= plane < len(level.pages) or level.pages[plane] is None:
                if i == 0:
                    raise InputError(f"{self.path}: has {len(level.pages)} image plane(s); "
                                     f"plane {plane} does not exist")
                break  # keep the complete levels above an incomplete one
            pages.append(level.pages[plane])
        return pages

    def _find_mpp(self) -> float | None:
        """Micrometres per level-0 pixel from OME, Aperio or resolution-tag metadata."""
        from sac.data.images import read_pixel_size_um

        mpp = _ome_mpp(self._tif.ome_metadata) if self._tif.is_ome else None
        if mpp is None:
            match = re.search(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)",
                              getattr(self._pages[0].keyframe, "description", "") or "")
            mpp = _positive(match.group(1)) if match else None
        if mpp is None:
            try:
                mpp = read_pixel_size_um(self.path)
            except InputError:
                mpp = None
        lo, hi = PLAUSIBLE_PIXEL_UM
        return mpp if mpp is not None and lo <= mpp <= hi else None

    def _read_raw(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        """Copy the window out of the tiles it overlaps (decoding only those)."""
        if self._tif.filehandle.closed:
            raise ValueError(f"{self.path}: slide is closed")
        ch, cw, n_rows, n_cols, planes, samples, dtype, nodata = self._layout[level]
        out = np.empty((h, w, samples), dtype=dtype)
        for p in range(planes):
            for row in range(ly // ch, (ly + h - 1) // ch + 1):
                for col in range(lx // cw, (lx + w - 1) // cw + 1):
                    index = (p * n_rows + row) * n_cols + col
                    tile = self._chunk(level, index)
                    ty0, tx0 = row * ch, col * cw
                    y0, y1 = max(ly, ty0), min(ly + h, ty0 + ch)
                    x0, x1 = max(lx, tx0), min(lx + w, tx0 + cw)
                    dst = out[y0 - ly:y1 - ly, x0 - lx:x1 - lx, p:p + samples // planes]
                    if tile is None:
                        dst[...] = nodata
                        continue
                    src = tile[y0 - ty0:y1 - ty0, x0 - tx0:x1 - tx0]
                    if src.shape[:2] != dst.shape[:2]:
                        raise InputError(f"{self.path}: tile {index} of level {level} decodes "
                                         f"to {tile.shape[:2]}, too small; the file is corrupt")
                    dst[...] = src
        return out

    def _chunk(self, level: int, index: int) -> np.ndarray | None:
        """Decoded tile/strip ``index`` of ``level`` as (rows, cols, samples); None if absent."""
        key = (level, index)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        tile = self._decode_chunk(level, index)
        if self.on_decode is not None:
            self.on_decode(level, index)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = tile
                self._cached += 0 if tile is None else tile.nbytes
            while self._cached > self._cache_bytes and len(self._cache) > 1:  # keep the newest
                _, old = self._cache.popitem(last=False)
                self._cached -= 0 if old is None else old.nbytes
        return tile

    def _decode_chunk(self, level: int, index: int) -> np.ndarray | None:
        """Read the chunk's bytes and decode them with tifffile's decoder for the page."""
        page = self._pages[level]
        keyframe = page.keyframe
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if offset == 0 or count == 0:
            return None  # sparse file: no data stored for this tile
        fh = self._tif.filehandle
        try:
            with fh.lock:
                fh.seek(offset)
                data = fh.read(count)
            if len(data) < count:
                raise OSError(f"only {len(data)} of {count} bytes present")
            kwargs = {}
            if keyframe.compression in _JPEG:
                kwargs = {"jpegtables": page.jpegtables, "jpegheader": keyframe.jpegheader}
            tile, _, _ = keyframe.decode(data, index, **kwargs)
        except Exception as exc:  # decoders raise many types for corrupt or truncated data
            raise InputError(f"{self.path}: cannot decode tile {index} of level {level} "
                             f"({type(exc).__name__}: {exc}); the file is truncated or corrupt"
                             ) from exc
        if tile is None:
            return None
        tile = np.asarray(tile)
        return tile.reshape(tile.shape[-3:]) if tile.ndim == 4 else tile

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            self._cached = 0
        self._tif.close()


def _check_page(page: Any, source: str) -> tuple[int, int, int, int, int, int, np.dtype, Any]:
    """Chunk grid of a level page: (chunk rows, chunk cols, grid rows, grid cols, sample
    planes, samples, dtype, nodata); InputError for layouts a slide cannot have."""
    kf = page.keyframe
    if kf.dtype is None:
        raise InputError(f"{source}: unsupported TIFF sample format ({kf.bitspersample}-bit, "
                         f"SampleFormat {kf.sampleformat})")
    if kf.imagedepth > 1:
        raise InputError(f"{source}: volumetric (3-D) TIFF pages are not supported as slides")
    samples = int(kf.samplesperpixel)
    if samples > 4:
        raise InputError(f"{source}: {samples} samples per pixel; slides must be gray, "
                         "gray+alpha, RGB or RGBA (save one channel or an RGB rendering)")
    if kf.is_tiled:
        ch, cw = int(kf.tilelength), int(kf.tilewidth)
    else:
        ch, cw = min(int(kf.rowsperstrip), int(kf.imagelength)), int(kf.imagewidth)
    planes = samples if kf.planarconfig == 2 and samples > 1 else 1
    n_rows, n_cols = math.ceil(kf.imagelength / ch), math.ceil(kf.imagewidth / cw)
    if len(page.dataoffsets) < planes * n_rows * n_cols:
        raise InputError(f"{source}: page lists {len(page.dataoffsets)} tiles, expected "
                         f"{planes * n_rows * n_cols}; the file is corrupt")
    return ch, cw, n_rows, n_cols, planes, samples, np.dtype(kf.dtype), kf.nodata


def _positive(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _ome_mpp(xml: str | None) -> float | None:
    """PhysicalSizeX of the first OME Image, in micrometres (OME's default unit)."""
    if not xml:
        return None
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Pixels":
            size = _positive(element.get("PhysicalSizeX", ""))
            factor = _OME_UM.get(element.get("PhysicalSizeXUnit", "µm"))
            return None if size is None or factor is None else size * factor
    return None
