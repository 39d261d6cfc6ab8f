"""Synthetic images for tests: bright disks on a smooth textured background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from sac.data.synthetic import disk_labels, disk_strip, grid_disks, matched_ious

__all__ = ["DEFAULT_DISKS", "blob_strip", "disk_boxes", "disk_image", "disk_labels",
           "disk_strip", "grid_disks", "matched_ious", "write_disk_folder", "write_pyramid"]


def disk_image(
    shape: tuple[int, int] = (256, 256),
    disks: list[tuple[int, int, int]] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 image and uint32 labels of bright disks ``(cy, cx, r)`` on texture."""
    rng = np.random.default_rng(seed)
    h, w = shape
    if disks is None:
        disks = [(60, 70, 18), (150, 190, 24), (200, 80, 15), (70, 190, 12), (200, 200, 16)]
    img = 0.25 + 0.05 * ndi.gaussian_filter(rng.normal(0, 1, shape), 3)
    labels = np.zeros(shape, dtype=np.uint32)
    yy, xx = np.mgrid[:h, :w]
    for i, (cy, cx, r) in enumerate(disks, start=1):
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[m] = 0.85 + rng.normal(0, 0.02, int(m.sum()))
        labels[m] = i
    gray = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return np.stack([gray] * 3, axis=-1), labels


def disk_boxes(disks: list[tuple[int, int, int]], pad: int = 3) -> np.ndarray:
    """Tight boxes (x0, y0, x1, y1) around disks, grown by ``pad`` pixels."""
    return np.array([[cx - r - pad, cy - r - pad, cx + r + pad, cy + r + pad]
                     for cy, cx, r in disks], dtype=np.float32)


DEFAULT_DISKS = [(60, 70, 18), (150, 190, 24), (200, 80, 15), (70, 190, 12), (200, 200, 16)]


def write_pyramid(path: Path, img: np.ndarray) -> Path:
    """A two-level tiled pyramidal TIFF of ``img`` at 0.5 um/px (level 1 at half size)."""
    import tifffile

    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate([img, img[::2, ::2]]):
            per_cm = 1e4 / (0.5 * 2**i)
            tw.write(level, tile=(128, 128), photometric="rgb", compression="zlib",
                     resolution=(per_cm, per_cm), resolutionunit="CENTIMETER",
                     subfiletype=1 if i else 0, **({"subifds": 1} if i == 0 else {}))
    return path


def blob_strip(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright blobs (radius 3-5) every 23 px along a dark h x w grey strip, some touching its
    long edges; (image, labels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = np.zeros((h, w), np.uint8)
    for cx in range(8, w - 8, 23):
        cy, r = rng.integers(4, h - 4), rng.integers(3, 6)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 200
    return img, ndi.label(img > 100)[0]


def write_disk_folder(root: Path, n: int = 6, size: int = 128, seed: int = 0) -> Path:
    """A generic images/ + labels/ dataset of random bright disks."""
    import imageio.v3 as iio
    import tifffile

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        disks = [(int(rng.integers(16, size - 16)), int(rng.integers(16, size - 16)),
                  int(rng.integers(7, 12))) for _ in range(6)]
        img, lab = disk_image((size, size), disks, seed=i)
        iio.imwrite(root / "images" / f"im{i}.png", img)
        tifffile.imwrite(root / "labels" / f"im{i}.tif", lab.astype(np.uint16))
    return root
