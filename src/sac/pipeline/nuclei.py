"""Stage 2, generator maps to nuclei: a seeded watershed on the stitched maps.

Detection runs once on the whole image's maps, so no nucleus is split by a tile seam. Each
nucleus also gets an *extent*, the box SAM's decoding window must cover, whether or not the box
itself is a prompt.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from sac.model.config import Thresholds
from sac.pipeline.maps import Maps
from sac.pipeline.prompts import instance_table


def detect(maps: Maps, th: Thresholds) -> np.ndarray:
    """uint32 nucleus instances (1..N) from the maps (see :func:`detect_nuclei`)."""
    return detect_nuclei(maps.fg, maps.centre, maps.boundary, fg_thresh=th.fg,
                         min_distance=th.min_distance, min_area=th.min_area,
                         centre_thresh=th.centre)


def extents(labels: np.ndarray) -> np.ndarray:
    """(N, 4) float32 ``x0, y0, x1, y1`` bounding boxes (inclusive) per instance."""
    table = instance_table(labels)
    return np.array([[xs.start, ys.start, xs.stop - 1, ys.stop - 1] for ys, xs in table.slices],
                    np.float32).reshape(-1, 4)


def detect_nuclei(
    fg: np.ndarray,
    centre: np.ndarray,
    boundary: np.ndarray | None = None,
    fg_thresh: float = 0.5,
    min_distance: int = 3,
    min_area: int = 8,
    centre_thresh: float = 0.3,
) -> np.ndarray:
    """uint32 instance labels (1..N) from the generator's probability maps.

    Seeds are local maxima of ``centre`` at or above ``centre_thresh`` inside ``fg >
    fg_thresh``, at least ``min_distance`` apart; a foreground component without a seed gets
    one at its highest centre value. A marker watershed on ``boundary - centre`` (``-centre``
    without a boundary map) within the foreground splits touching nuclei along the predicted
    boundary; objects under ``min_area`` px are dropped.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    fg = np.asarray(fg, np.float32)
    centre = np.asarray(centre, np.float32)
    mask = fg > fg_thresh
    if not mask.any():
        return np.zeros(fg.shape, np.uint32)
    masked = np.where(mask, centre, 0.0).astype(np.float32)
    peaks = peak_local_max(masked, min_distance=min_distance, threshold_abs=centre_thresh,
                           exclude_border=False)
    comps, n_comp = ndi.label(mask)
    seeded = np.zeros(n_comp + 1, bool)
    seeded[comps[tuple(peaks.T)]] = True
    missing = np.flatnonzero(~seeded[1:]) + 1
    if missing.size:
        extra = np.asarray(ndi.maximum_position(masked, comps, missing), np.int64)
        peaks = np.concatenate([peaks.reshape(-1, 2), extra.reshape(-1, 2)])
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    elevation = -centre if boundary is None else np.asarray(boundary, np.float32) - centre
    labels = watershed(elevation, markers, mask=mask)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_area
    keep[0] = False
    lut = np.zeros(len(sizes), np.uint32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return lut[labels]
