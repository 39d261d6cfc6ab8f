"""Synthetic nuclei with known labels: disks and ellipses on textured backgrounds.

For checks that need no dataset: the test suite, and benchmarks that ask whether a model finds
nuclei of every size and contrast (``benchmarks/contrast.py``) or in long thin strips
(``benchmarks/strip.py``). Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def disk_labels(shape: tuple[int, int], spec: list[tuple[int, int, int]]) -> np.ndarray:
    """uint32 labels of disks ``(cy, cx, r)``; later disks do not overwrite earlier ones."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint32)
    for i, (cy, cx, r) in enumerate(spec, start=1):
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (labels == 0)] = i
    return labels


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


def disk_strip(h: int, w: int, dark: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """An h x w strip of :func:`grid_disks` (radius 10) from row 6 of the grid, so that a 20-px
    strip cuts every disk by both long edges; (RGB, labels)."""
    grid, truth = grid_disks(10, n_side=3, dark=dark)
    n = w // grid.shape[1] + 1
    return (np.tile(grid, (1, n, 1))[6: 6 + h, :w],
            ndi.label(np.tile(truth, (1, n))[6: 6 + h, :w] > 0)[0])
