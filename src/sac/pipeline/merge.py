"""Merge per-nucleus masks, possibly overlapping, into one instance-label image.

Masks are painted in order of decreasing quality score; a mask keeps only the pixels no better
mask has taken. A mask that loses most of its area that way is a duplicate and is dropped, so the
merge also acts as mask-level non-maximum suppression. Before that, masks that the prompt
generator does not support can be dropped (:func:`drop_off_foreground`).
"""

from __future__ import annotations

import numpy as np

from sac.core.labels import InstanceMask, largest_component

#: the quantile of the generator's foreground under a mask that the foreground cut reads
SUPPORT_QUANTILE = 0.75


def foreground_support(inst: InstanceMask, fg: np.ndarray, up: tuple[float, float]) -> float:
    """Upper quartile of the map ``fg`` under ``inst``, whose grid is ``up`` (fy, fx) times
    finer than the map's (each mask pixel reads the map pixel it falls in).

    The upper quartile, not the mean: the generator's map can have a hole inside a large or
    flat nucleus that SAM outlines whole, and such a mask is still a nucleus when a quarter of
    it is clearly foreground; a mask that SAM drew on background has no such quarter.
    """
    h, w = inst.mask.shape
    rows = np.clip(((inst.y0 + np.arange(h) + 0.5) / up[0]).astype(np.int64), 0, fg.shape[0] - 1)
    cols = np.clip(((inst.x0 + np.arange(w) + 0.5) / up[1]).astype(np.int64), 0, fg.shape[1] - 1)
    under = fg[np.ix_(rows, cols)][inst.mask]
    return float(np.quantile(under, SUPPORT_QUANTILE)) if under.size else 0.0


def drop_off_foreground(instances: list[InstanceMask], fg: np.ndarray,
                        up: tuple[float, float], min_fg: float) -> list[InstanceMask]:
    """``instances`` without those whose foreground support (:func:`foreground_support`) is
    below ``min_fg`` (all of them kept when it is 0)."""
    if min_fg <= 0:
        return instances
    return [m for m in instances if foreground_support(m, fg, up) >= min_fg]


def merge_instances(
    instances: list[InstanceMask],
    shape: tuple[int, int],
    min_area: int = 1,
    min_visible: float = 0.5,
) -> np.ndarray:
    """Paint ``instances`` into a label image of ``shape`` (0 = background, 1..N by score).

    A mask is kept when at least ``min_visible`` of its area and ``min_area`` pixels remain
    free after better-scoring masks; each kept label is reduced to its largest connected piece.
    Returns uint32 labels (the caller narrows the dtype for writing).
    """
    return merge_scored(instances, shape, min_area, min_visible)[0]


def merge_scored(
    instances: list[InstanceMask],
    shape: tuple[int, int],
    min_area: int = 1,
    min_visible: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`merge_instances` plus the score of each label: ``scores[i - 1]`` for label i."""
    labels = np.zeros(shape, dtype=np.uint32)
    scores: list[float] = []
    order = sorted(range(len(instances)), key=lambda i: -instances[i].score)
    next_id = 1
    for i in order:
        inst = instances[i]
        h, w = inst.mask.shape
        y1, x1 = min(inst.y0 + h, shape[0]), min(inst.x0 + w, shape[1])
        ys, xs = max(inst.y0, 0), max(inst.x0, 0)
        if y1 <= ys or x1 <= xs:
            continue
        m = inst.mask[ys - inst.y0 : y1 - inst.y0, xs - inst.x0 : x1 - inst.x0]
        area = int(m.sum())
        if area == 0:
            continue
        region = labels[ys:y1, xs:x1]
        free = m & (region == 0)
        n_free = int(free.sum())
        if n_free < min_area or n_free < min_visible * area:
            continue
        free = largest_component(free)
        region[free] = next_id
        next_id += 1
        scores.append(float(inst.score))
    return labels, np.asarray(scores, np.float32)
