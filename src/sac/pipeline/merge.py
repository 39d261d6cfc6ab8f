"""Merge per-nucleus masks, possibly overlapping, into one instance-label image.

Masks are painted in order of decreasing quality score; a mask keeps only the pixels no better
mask has taken. A mask that loses most of its area that way is a duplicate and is dropped, so the
merge also acts as mask-level non-maximum suppression. The pixels two kept masks both claim
can instead go to the mask with the higher logit there (``overlaps="logit"``): a confident
mask that spills onto its neighbour then no longer takes the neighbour's rim. Before that,
masks that the prompt generator does not support can be dropped (:func:`drop_off_foreground`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from sac.core.labels import InstanceMask, largest_component

#: the quantile of the generator's foreground under a mask that the foreground cut reads
SUPPORT_QUANTILE = 0.75
#: who gets a pixel that two kept masks claim (see :func:`merge_instances`)
OVERLAPS = ("score", "logit")


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
    overlaps: str = "score",
) -> np.ndarray:
    """Paint ``instances`` into a label image of ``shape`` (0 = background, 1..N by score).

    A mask is kept when at least ``min_visible`` of its area and ``min_area`` pixels remain
    free after better-scoring masks; each kept label is reduced to its largest connected piece.
    ``overlaps`` says who gets a pixel that two kept masks claim: the better-scoring mask
    (``"score"``), or the mask with the higher logit there (``"logit"``; every instance must
    carry its logits). Returns uint32 labels (the caller narrows the dtype for writing).
    """
    return merge_scored(instances, shape, min_area, min_visible, overlaps)[0]


def merge_scored(
    instances: list[InstanceMask],
    shape: tuple[int, int],
    min_area: int = 1,
    min_visible: float = 0.5,
    overlaps: str = "score",
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`merge_instances` plus the score of each label: ``scores[i - 1]`` for label i."""
    if overlaps not in OVERLAPS:
        raise ValueError(f"overlaps must be one of {OVERLAPS}; got {overlaps!r}")
    labels = np.zeros(shape, dtype=np.uint32)
    kept: list[InstanceMask] = []
    order = sorted(range(len(instances)), key=lambda i: -instances[i].score)
    for i in order:
        inst = instances[i]
        box = _clip(inst, shape)
        if box is None:
            continue
        (ys, xs), m = box
        area = int(m.sum())
        if area == 0:
            continue
        region = labels[ys, xs]
        free = m & (region == 0)
        n_free = int(free.sum())
        if n_free < min_area or n_free < min_visible * area:
            continue
        kept.append(inst)
        region[largest_component(free)] = len(kept)
    if overlaps == "logit" and kept:
        labels = _by_logit(kept, shape, labels, min_area)
    scores = np.asarray([m.score for m in kept], np.float32)
    counts = np.bincount(labels.ravel(), minlength=len(kept) + 1)
    if (counts[1:] == 0).any():  # labels left without pixels: renumber the others
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(len(kept) + 1, np.uint32)
        lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint32)
        labels, scores = lut[labels], scores[ids - 1]
    return labels, scores


def _clip(inst: InstanceMask, shape: tuple[int, int]
          ) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """The slices of ``inst`` within an image of ``shape`` and its mask cut to them."""
    h, w = inst.mask.shape
    y1, x1 = min(inst.y0 + h, shape[0]), min(inst.x0 + w, shape[1])
    ys, xs = max(inst.y0, 0), max(inst.x0, 0)
    if y1 <= ys or x1 <= xs:
        return None
    cut = (slice(ys - inst.y0, y1 - inst.y0), slice(xs - inst.x0, x1 - inst.x0))
    return (slice(ys, y1), slice(xs, x1)), inst.mask[cut]


def _by_logit(kept: list[InstanceMask], shape: tuple[int, int], labels: np.ndarray,
              min_area: int) -> np.ndarray:
    """Labels of the ``kept`` masks (label i = ``kept[i - 1]``) where each pixel inside
    several of them goes to the one whose logit there is highest, each label then reduced to
    its largest piece; a label left with fewer than ``min_area`` pixels takes back its pixels
    from the score order (``labels``), so no nucleus is lost to a neighbour."""
    best = np.full(shape, -np.inf, np.float32)
    out = np.zeros(shape, np.uint32)
    for k, inst in enumerate(kept, 1):
        if inst.logits is None:
            raise ValueError("overlaps='logit' needs masks decoded with their logits")
        (ys, xs), m = _clip(inst, shape)  # type: ignore[misc]
        cut = (slice(ys.start - inst.y0, ys.stop - inst.y0),
               slice(xs.start - inst.x0, xs.stop - inst.x0))
        logit = inst.logits[cut].astype(np.float32)
        take = m & (logit > best[ys, xs])
        best[ys, xs][take] = logit[take]
        out[ys, xs][take] = k
    result = np.zeros(shape, np.uint32)
    for k, sl in enumerate(ndi.find_objects(out), 1):
        if sl is None:
            continue
        piece = largest_component(out[sl] == k)
        if piece.sum() >= max(min_area, 1):
            result[sl][piece] = k
    for k, sl in enumerate(ndi.find_objects(labels), 1):  # labels too small now: as before
        if sl is not None and not (result[sl] == k).any():
            result[sl][labels[sl] == k] = k
    return result
