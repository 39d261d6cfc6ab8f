"""Synthetic images for tests: bright disks on a smooth textured background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi


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


def disk_labels(shape: tuple[int, int], spec: list[tuple[int, int, int]]) -> np.ndarray:
    """uint32 labels of disks ``(cy, cx, r)``; later disks do not overwrite earlier ones."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint32)
    for i, (cy, cx, r) in enumerate(spec, start=1):
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (labels == 0)] = i
    return labels


DEFAULT_DISKS = [(60, 70, 18), (150, 190, 24), (200, 80, 15), (70, 190, 12), (200, 200, 16)]


def matched_ious(a: np.ndarray, b: np.ndarray) -> list[float]:
    """For each label of ``a``, IoU with the label of ``b`` it overlaps most (0 if none)."""
    out = []
    for i in np.unique(a[a > 0]):
        m = a == i
        j = np.bincount(b[m].astype(np.int64)).argmax()
        out.append(0.0 if j == 0 else float((m & (b == j)).sum() / (m | (b == j)).sum()))
    return out


def grid_disks(r: int, n_side: int = 3, seed: int = 0, ellipse: bool = False,
               dark: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Bright disks of radius ``r`` on a grid over textured dark background: (RGB, labels).

    ``ellipse``: ellipses of semi-axes 1.25 r and 0.8 r at random orientations instead;
    ``dark``: dark nuclei on a bright textured background (as in brightfield or H&E)."""
    rng = np.random.default_rng(seed)
    gap = int(3.2 * r)
    size = n_side * gap
    centres = [(gap // 2 + i * gap, gap // 2 + j * gap) for i in range(n_side)
               for j in range(n_side)]
    if ellipse:
        yy, xx = np.mgrid[:size, :size]
        labels = np.zeros((size, size), np.uint32)
        for k, (cy, cx) in enumerate(centres, start=1):
            t = rng.uniform(0, np.pi)
            u = (yy - cy) * np.cos(t) + (xx - cx) * np.sin(t)
            v = -(yy - cy) * np.sin(t) + (xx - cx) * np.cos(t)
            labels[(u / (1.25 * r)) ** 2 + (v / (0.8 * r)) ** 2 <= 1] = k
    else:
        labels = disk_labels((size, size), [(cy, cx, r) for cy, cx in centres])
    fg, bg = (0.25, 0.85) if dark else (0.8, 0.08)
    img = np.where(labels > 0, fg, bg) + ndi.gaussian_filter(rng.normal(0, 1, labels.shape),
                                                             3) * 0.04
    img = ndi.gaussian_filter(img, 1) + rng.normal(0, 0.02, img.shape)
    gray = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return np.stack([gray] * 3, axis=-1), labels


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


def disk_strip(h: int, w: int, dark: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """An h x w strip of :func:`grid_disks` (radius 10) from row 6 of the grid, so that a 20-px
    strip cuts every disk by both long edges; (RGB, labels)."""
    grid, truth = grid_disks(10, n_side=3, dark=dark)
    n = w // grid.shape[1] + 1
    return (np.tile(grid, (1, n, 1))[6: 6 + h, :w],
            ndi.label(np.tile(truth, (1, n))[6: 6 + h, :w] > 0)[0])


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
