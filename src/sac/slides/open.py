"""Opening a slide: choosing the backend (OpenSlide, tiffslide, tifffile, in memory) for a file.

The readers themselves are :mod:`sac.slides.tiff` and :mod:`sac.slides.vendor`, built on the
interface in :mod:`sac.slides.reader`.
"""

from __future__ import annotations

from pathlib import Path

from sac.core.errors import ConfigError, InputError
from sac.data.images import TIFF_SUFFIXES
from sac.slides.reader import (
    BACKENDS,
    IN_MEMORY_SUFFIXES,
    INSTALL_HINT,
    ArraySlide,
    SlideReader,
    check_slide_file,
)


def open_slide(path: str | Path, backend: str = "auto") -> SlideReader:
    """Open a whole-slide image (or an ordinary image) for region reading.

    ``backend``: ``"openslide"`` (the openslide-python package with the openslide-bin wheel),
    ``"tiffslide"``, ``"tifffile"`` (:class:`~sac.slides.tiff.TiffFileSlide`, always
    available) or ``"auto"``, which tries in order:

    - vendor formats (.svs, .ndpi, .mrxs, .scn, .vms, .vmu, .bif): openslide, tiffslide, then
      tifffile (which also reads SVS and NDPI);
    - .tif/.tiff: openslide when it recognises a vendor format inside (e.g. Philips, Ventana,
      Leica); otherwise tifffile (pyramids in SubIFDs or as successive pages, OME-TIFF, strips,
      gray and 16-bit), then openslide and tiffslide;
    - .png/.jpg/.jpeg: read whole into an :class:`ArraySlide` (one level);
    - anything else: openslide, tiffslide, tifffile.

    Every failure is an :class:`~sac.core.errors.InputError` naming the file and each backend's
    complaint, with the install command when OpenSlide is missing.
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown slide backend {backend!r}; use one of {', '.join(BACKENDS)}")
    check_slide_file(path)
    suffix = path.suffix.lower()
    if backend == "auto" and suffix in IN_MEMORY_SUFFIXES:
        from sac.data.images import read_image

        return ArraySlide(read_image(path), path)
    if backend != "auto":
        order = [backend]
    elif suffix in TIFF_SUFFIXES:
        order = ["tifffile", "openslide", "tiffslide"]
        if _openslide_vendor(path) not in (None, "generic-tiff"):
            order = ["openslide", "tifffile", "tiffslide"]
    else:
        order = ["openslide", "tiffslide", "tifffile"]
    errors: list[str] = []
    missing: list[str] = []
    for name in order:
        try:
            return _open_with(name, path)
        except ModuleNotFoundError as exc:
            missing.append(name)
            errors.append(f"{name}: not installed ({exc.name or exc})")
        except InputError as exc:
            errors.append(f"{name}: {_strip_path(str(exc), path)}")
    if backend != "auto" and missing:
        extra = INSTALL_HINT if backend == "openslide" else "pip install tiffslide"
        raise ConfigError(f"slide backend {backend!r} is not installed; {extra} "
                          "(or: pip install 'segment-any-cell[wsi]')")
    hint = (f"; to read vendor formats install OpenSlide: {INSTALL_HINT}"
            if "openslide" in missing else "")
    raise InputError(f"{path}: cannot open as a whole-slide image ({'; '.join(errors)}); the file "
                     f"is corrupt, truncated or not a supported slide format{hint}")


def _strip_path(message: str, path: Path) -> str:
    """A backend's message without the file name and advice (the caller gives both once)."""
    prefix = f"{path}: "
    message = message[len(prefix):] if message.startswith(prefix) else message
    return message.split("; the file is")[0]


def _openslide_vendor(path: Path) -> str | None:
    """OpenSlide's vendor name for the file (reads the header only); None if unknown or absent."""
    try:
        import openslide
    except ImportError:
        return None
    try:
        return openslide.OpenSlide.detect_format(str(path))
    except Exception:  # a corrupt header must not stop the other backends from trying
        return None


def _open_with(name: str, path: Path) -> SlideReader:
    """Open ``path`` with one backend; ModuleNotFoundError when its package is missing."""
    if name == "tifffile":
        from sac.slides.tiff import TiffFileSlide

        return TiffFileSlide(path)
    from sac.slides.vendor import OpenSlideSlide, TiffSlideSlide

    return OpenSlideSlide(path) if name == "openslide" else TiffSlideSlide(path)
