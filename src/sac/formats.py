"""Writing results: label TIFFs and outline overlays (atomic; never silently overwriting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sac.fileio import atomic_path


def label_dtype(labels: np.ndarray) -> type[np.unsignedinteger]:
    """uint16 while labels fit, uint32 above 65,535 nuclei."""
    return np.uint16 if int(labels.max(initial=0)) <= np.iinfo(np.uint16).max else np.uint32


def write_labels_tif(path: str | Path, labels: np.ndarray, overwrite: bool = False) -> Path:
    """Write an instance-label image (0 = background) as a compressed TIFF."""
    import tifffile

    path = Path(path)
    with atomic_path(path, overwrite) as tmp:
        tifffile.imwrite(tmp, labels.astype(label_dtype(labels)), compression="zlib")
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
