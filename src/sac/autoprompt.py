"""From the prompt generator's maps to SAM prompt sets, as training and inference both use it.

:func:`detect` turns the maps into nucleus instances; :func:`positive_points` places one
positive point per nucleus by the configured strategy (the paper's centroid-based or
probability-based selection); :func:`instance_sets` and :func:`semantic_set` build the prompt
sets of the two outputs. Each instance set also gets an *extent*, the box SAM's decoding window
must cover, whether or not the box itself is a prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from sac.prompting import (
    PromptSet,
    background_points,
    centroid_points,
    instance_prompts,
    instance_table,
    probability_points,
    semantic_prompts,
)
from sac.sacmodel.config import PromptConfig, Thresholds

# Background negatives are sampled from a generator fixed per call, so inference is repeatable.
INFERENCE_SEED = 0


@dataclass
class Maps:
    """Generator probabilities for one image or tile, each float32 (H, W) in [0, 1]."""

    fg: np.ndarray
    boundary: np.ndarray
    centre: np.ndarray

    def crop(self, ys: slice, xs: slice) -> Maps:
        return Maps(self.fg[ys, xs], self.boundary[ys, xs], self.centre[ys, xs])


def detect(maps: Maps, th: Thresholds) -> np.ndarray:
    """uint32 nucleus instances (1..N) from the maps (see :func:`detect_nuclei`)."""
    return detect_nuclei(maps.fg, maps.centre, maps.boundary, fg_thresh=th.fg,
                         min_distance=th.min_distance, min_area=th.min_area,
                         centre_thresh=th.centre)


def positive_points(labels: np.ndarray, maps: Maps, strategy: str) -> np.ndarray:
    """(N, 2) ``(x, y)`` positive point per instance of ``labels`` (increasing id).

    ``centroid``: the instance's centroid (its innermost pixel for non-convex shapes);
    ``probability``: its pixel of highest centre probability.
    """
    table = instance_table(labels)
    if strategy == "centroid" or len(table) == 0:
        return centroid_points(labels, table)
    pos = ndi.maximum_position(maps.centre, table.seq, np.arange(1, len(table) + 1))
    return np.asarray(pos, np.float32).reshape(-1, 2)[:, ::-1].copy()


def extents(labels: np.ndarray) -> np.ndarray:
    """(N, 4) float32 ``x0, y0, x1, y1`` bounding boxes (inclusive) per instance."""
    table = instance_table(labels)
    return np.array([[xs.start, ys.start, xs.stop - 1, ys.stop - 1] for ys, xs in table.slices],
                    np.float32).reshape(-1, 4)


def instance_sets(labels: np.ndarray, maps: Maps, cfg: PromptConfig,
                  rng: np.random.Generator | None = None) -> list[PromptSet]:
    """One prompt set per instance of ``labels``, following ``cfg``."""
    if not labels.any():
        return []
    rng = rng if rng is not None else np.random.default_rng(INFERENCE_SEED)
    return instance_prompts(
        labels, positive_points(labels, maps, cfg.strategy),
        n_neg_neighbours=cfg.neighbour_negatives if cfg.use_points else 0,
        n_neg_background=cfg.background_negatives if cfg.use_points else 0,
        use_boxes=cfg.use_boxes, use_points=cfg.use_points, box_pad=cfg.box_pad,
        fg_prob=maps.fg, rng=rng,
    )


def semantic_points(labels: np.ndarray, maps: Maps, cfg: PromptConfig, fg_thresh: float,
                    min_distance: float) -> np.ndarray:
    """Positive points for a semantic set: instance points, or the most probable pixels."""
    if cfg.strategy == "centroid":
        return positive_points(labels, maps, "centroid")
    return probability_points(maps.fg * maps.centre, cfg.semantic_points, min_distance,
                              thresh=fg_thresh * 0.5)


def semantic_set(labels: np.ndarray, maps: Maps, cfg: PromptConfig, th: Thresholds,
                 rng: np.random.Generator | None = None) -> PromptSet:
    """All prompts of one tile in one set: positives by strategy, negatives on background.

    About a quarter of the ``cfg.semantic_points`` budget goes to background negatives.
    """
    rng = rng if rng is not None else np.random.default_rng(INFERENCE_SEED)
    pos = semantic_points(labels, maps, cfg, th.fg, max(th.min_distance, 2))
    n_neg = max(1, cfg.semantic_points // 4)
    spacing = max(4.0, float(np.sqrt(maps.fg.size / max(n_neg, 1))) / 2)
    neg = background_points(maps.fg, n_neg, spacing, rng=rng)
    return semantic_prompts(pos, neg, cfg.semantic_points, rng)


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
