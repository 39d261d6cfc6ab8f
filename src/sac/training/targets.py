"""Training targets for the prompt generator, computed from instance labels (numpy only).

The three target maps match the generator's output channels (:mod:`sac.modeling.generator`):
foreground, the inner boundary ring of every instance, and a Gaussian centre heatmap. They are
built per training crop, so they are vectorised where that pays: one pass for the instance
statistics, then a small separable Gaussian stamp per instance.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

from sac.pipeline.prompts import centroid_points, instance_table

SIGMA_SCALE = 0.5
SIGMA_RANGE = (1.0, 8.0)


def instance_sigmas(areas: np.ndarray, scale: float = SIGMA_SCALE,
                    clip: tuple[float, float] = SIGMA_RANGE) -> np.ndarray:
    """Gaussian widths ``scale`` x the equivalent radius sqrt(area / pi), clipped to ``clip``."""
    return np.clip(scale * np.sqrt(np.asarray(areas, np.float64) / np.pi), *clip)


def centre_heatmap(
    shape: tuple[int, int], centres: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """float32 (H, W) map, the maximum over instances of exp(-d^2 / (2 sigma_i^2)).

    ``centres`` (N, 2) are ``(x, y)`` and rounded to pixels, so each blob peaks at exactly 1.
    Each blob is stamped within 3 sigma of its centre as an outer product of 1-D Gaussians.
    """
    h, w = shape
    heat = np.zeros(shape, np.float32)
    cx = np.rint(centres[:, 0]).astype(np.int64)
    cy = np.rint(centres[:, 1]).astype(np.int64)
    for x, y, s in zip(cx.tolist(), cy.tolist(), np.asarray(sigmas).tolist(), strict=True):
        k = int(np.ceil(3 * s))
        y0, y1, x0, x1 = max(y - k, 0), min(y + k + 1, h), max(x - k, 0), min(x + k + 1, w)
        if y0 >= y1 or x0 >= x1:
            continue
        gy = np.exp(-((np.arange(y0, y1) - y) ** 2) / (2 * s * s)).astype(np.float32)
        gx = np.exp(-((np.arange(x0, x1) - x) ** 2) / (2 * s * s)).astype(np.float32)
        win = heat[y0:y1, x0:x1]
        np.maximum(win, gy[:, None] * gx[None, :], out=win)
    return heat


def generator_targets(labels: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """float32 (3, H, W) targets: foreground, inner boundary, centre heatmap.

    The heatmap centres are the instance centroids (their innermost pixel when the centroid
    falls outside, as in :func:`sac.pipeline.prompts.centroid_points`); the Gaussian width is
    ``sigma`` for every instance if given, else half the instance's equivalent radius clipped
    to [1, 8] px.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D; got shape {labels.shape}")
    out = np.zeros((3, *labels.shape), np.float32)
    out[0] = labels > 0
    out[1] = find_boundaries(labels, mode="inner")
    table = instance_table(labels)
    if len(table):
        centres = centroid_points(labels, table)
        sigmas = instance_sigmas(table.areas) if sigma is None else np.full(len(table), sigma)
        out[2] = centre_heatmap(labels.shape, centres, sigmas)
    return out
