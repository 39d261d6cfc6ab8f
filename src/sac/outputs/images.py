"""Writing results: label TIFFs and outline overlays (atomic; never silently overwriting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sac.core.checks import check_pixel_size
from sac.core.errors import InputError
from sac.core.fileio import atomic_path
from sac.core.labels import label_dtype
from sac.data.images import UM_PER_TIFF_UNIT


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
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iub" or (
            labels.dtype.kind == "i" and labels.size and labels.min() < 0):
        raise InputError(f"{path}: labels must be a 2-D array of non-negative integer ids "
                         f"(0 = background); got {labels.dtype} of shape {labels.shape}")
    extra: dict[str, Any] = {}
    pixel_size_um = check_pixel_size(pixel_size_um)
    if pixel_size_um is not None:
        per_cm = UM_PER_TIFF_UNIT[3] / pixel_size_um
        extra = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
    with atomic_path(path, overwrite) as tmp:
        tifffile.imwrite(tmp, labels.astype(label_dtype(labels)), compression="zlib", **extra)
    return path


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
