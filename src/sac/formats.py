"""Writing results: label TIFFs and outline overlays (atomic; never silently overwriting)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sac.errors import ConfigError, InputError
from sac.fileio import atomic_path

#: Micrometres per TIFF ResolutionUnit (2 inch, 3 centimetre; 4 and 5 are tifffile's
#: millimetre and micrometre extensions).
_UM_PER_UNIT = {2: 25_400.0, 3: 10_000.0, 4: 1_000.0, 5: 1.0}
#: Micrometres per unit name in ImageJ descriptions.
_UM_PER_NAMED_UNIT = {
    "micron": 1.0, "microns": 1.0, "um": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "cm": 1e4, "inch": 25_400.0,
}


def label_dtype(labels: np.ndarray) -> type[np.unsignedinteger]:
    """uint16 while labels fit, uint32 above 65,535 nuclei."""
    return np.uint16 if int(labels.max(initial=0)) <= np.iinfo(np.uint16).max else np.uint32


def write_labels_tif(
    path: str | Path,
    labels: np.ndarray,
    overwrite: bool = False,
    pixel_size_um: float | None = None,
) -> Path:
    """Write an instance-label image (0 = background) as a compressed TIFF.

    With ``pixel_size_um`` the pixel size goes into the standard resolution tags (XResolution
    and YResolution in pixels per centimetre, ResolutionUnit CENTIMETER), which Bio-Formats
    (QuPath), tifffile and Fiji read; Fiji shows it in micrometres (its "convert to microns"
    default). No ImageJ "unit=" description is added: ImageJ would pair that unit with the
    per-centimetre resolution and be off by 10,000 (ImageJ's own files store pixels per unit).
    """
    import tifffile

    path = Path(path)
    extra = {}
    if pixel_size_um is not None:
        if not (math.isfinite(pixel_size_um) and pixel_size_um > 0):
            raise ConfigError(f"pixel size must be a positive number of micrometres, got "
                              f"{pixel_size_um}")
        per_cm = _UM_PER_UNIT[3] / float(pixel_size_um)
        extra = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
    with atomic_path(path, overwrite) as tmp:
        tifffile.imwrite(tmp, labels.astype(label_dtype(labels)), compression="zlib", **extra)
    return path


def read_pixel_size_um(path: str | Path) -> float | None:
    """Pixel width in micrometres from a TIFF's resolution tags, or None when not recorded.

    Understands ResolutionUnit CENTIMETER, INCH, MILLIMETER and MICROMETER, and ImageJ files
    (resolution in pixels per the unit named in the ImageJ description). Beware: many
    non-microscopy writers store a nominal 72 or 300 dpi, read here as ~353 or ~85 um.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            xres = tags.get("XResolution")
            unit_tag = tags.get("ResolutionUnit")
            unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF default: inch
            ij_unit = (tif.imagej_metadata or {}).get("unit") if tif.is_imagej else None
    except (OSError, tifffile.TiffFileError) as exc:
        raise InputError(f"cannot read TIFF {path}: {exc}") from None
    if xres is None:
        return None
    num, den = xres.value
    if not num or not den:
        return None
    per_unit = num / den
    if ij_unit is not None:  # as in ImageJ, the description's unit wins
        um = _UM_PER_NAMED_UNIT.get(str(ij_unit).strip().lower())
        return None if um is None else um / per_unit
    if unit not in _UM_PER_UNIT:
        return None
    return _UM_PER_UNIT[unit] / per_unit


def outline_overlay(
    image: np.ndarray, labels: np.ndarray, color: tuple[int, int, int] = (255, 255, 0)
) -> np.ndarray:
    """RGB uint8 copy of ``image`` (float in [0, 1] or uint8) with nucleus outlines drawn."""
    from skimage.segmentation import find_boundaries

    rgb = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    out = rgb[..., :3].copy()
    out[find_boundaries(labels, mode="inner")] = color
    return out


def write_png(path: str | Path, image: np.ndarray, overwrite: bool = False) -> Path:
    """Write a uint8 image as PNG."""
    import imageio.v3 as iio

    path = Path(path)
    with atomic_path(path, overwrite) as tmp:
        iio.imwrite(tmp, image, extension=".png")
    return path
