"""Training targets for the prompt generator, computed from instance labels (numpy only).

The three target maps match the generator's output channels (:mod:`sac.modeling.generator`):
foreground, the inner boundary ring of every instance, and a centre map. The centre map is a
Gaussian blob per instance (``"gaussian"``, the original target) or each instance's distance
to its own edge divided by its maximum (``"distance"``, as StarDist and HoVer-Net use), which
follows elongated and touching shapes instead of assuming round nuclei. With ``"hv"`` the
third and fourth targets are HoVer-Net's horizontal and vertical maps instead: each pixel's
offset from its nucleus's centre along x and along y, scaled to [-1, 1] within the nucleus;
they jump from +1 to -1 where two nuclei touch, which is what separates them. Targets are
built per training crop, so they are vectorised where that pays.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from sac.pipeline.prompts import centroid_points, instance_table

SIGMA_SCALE = 0.5
SIGMA_RANGE = (1.0, 8.0)
#: kinds of centre target (``SACConfig.centre_target``)
CENTRE_TARGETS = ("gaussian", "distance", "hv")


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


def distance_map(seq: np.ndarray, slices: list[tuple[slice, slice]]) -> np.ndarray:
    """float32 (H, W): each instance's Euclidean distance to its own edge over its maximum.

    ``seq`` holds sequential ids 1..N and ``slices`` their bounding boxes, in id order (as in
    :func:`sac.pipeline.prompts.instance_table`).
    Values lie in (0, 1] inside instances (1 at the innermost pixels) and 0 outside; touching
    instances are kept apart because each is measured within its own mask only.
    """
    out = np.zeros(seq.shape, np.float32)
    for i, (ys, xs) in enumerate(slices, start=1):
        # one pixel of margin so the bounding box edge counts as outside
        y0, x0 = max(ys.start - 1, 0), max(xs.start - 1, 0)
        win = seq[y0:ys.stop + 1, x0:xs.stop + 1] == i
        d = ndi.distance_transform_edt(np.pad(win, 1))[1:-1, 1:-1]
        peak = d.max()
        if peak > 0:
            sub = out[y0:ys.stop + 1, x0:xs.stop + 1]
            sub[win] = (d[win] / peak).astype(np.float32)
    return out


def hv_maps(seq: np.ndarray, slices: list[tuple[slice, slice]], centres: np.ndarray
            ) -> np.ndarray:
    """float32 (2, H, W): horizontal and vertical offsets from each instance's centre.

    ``seq``/``slices`` as for :func:`distance_map`; ``centres`` (N, 2) ``x, y``, one per
    instance. Within an instance, offsets on either side of its centre are divided by the
    largest offset on that side, so each map runs from -1 at one extreme to +1 at the other
    (0 at the centre's column or row); outside instances both maps are 0.
    """
    out = np.zeros((2, *seq.shape), np.float32)
    for i, (ys, xs) in enumerate(slices, start=1):
        yy, xx = np.nonzero(seq[ys, xs] == i)
        for axis, (coords, start, c) in enumerate(
                ((xx, xs.start, centres[i - 1, 0]), (yy, ys.start, centres[i - 1, 1]))):
            d = (coords + start - c).astype(np.float32)
            pos, neg = d.max(initial=0.0), -d.min(initial=0.0)
            scaled = np.where(d > 0, d / max(pos, 1e-6), d / max(neg, 1e-6))
            out[axis, yy + ys.start, xx + xs.start] = scaled
    return out


def generator_targets(labels: np.ndarray, sigma: float | None = None,
                      centre: str = "gaussian") -> np.ndarray:
    """float32 (3, H, W) targets: foreground, inner boundary, centre map; (4, H, W) with the
    horizontal and vertical maps (:func:`hv_maps`) in place of the centre map for ``"hv"``.

    ``centre="gaussian"``: blobs at the instance centroids (their innermost pixel when the
    centroid falls outside, as in :func:`sac.pipeline.prompts.centroid_points`), of width
    ``sigma`` for every instance if given, else half the instance's equivalent radius clipped
    to [1, 8] px. ``centre="distance"``: the normalised distance map (:func:`distance_map`).
    ``centre="hv"``: offsets from the same centre points as the Gaussian's.
    """
    if centre not in CENTRE_TARGETS:
        raise ValueError(f"centre target must be one of {CENTRE_TARGETS}; got {centre!r}")
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D; got shape {labels.shape}")
    out = np.zeros((4 if centre == "hv" else 3, *labels.shape), np.float32)
    out[0] = labels > 0
    out[1] = find_boundaries(labels, mode="inner")
    table = instance_table(labels)
    if centre == "hv":
        if len(table):
            out[2:] = hv_maps(table.seq, table.slices, centroid_points(labels, table))
    elif centre == "distance":
        out[2] = distance_map(table.seq, table.slices)
    elif len(table):
        centres = centroid_points(labels, table)
        sigmas = instance_sigmas(table.areas) if sigma is None else np.full(len(table), sigma)
        out[2] = centre_heatmap(labels.shape, centres, sigmas)
    return out
