"""Merge per-nucleus masks, possibly overlapping, into one instance-label image.

Masks are painted in order of decreasing quality score; a mask keeps only the pixels no better
mask has taken. A mask that loses most of its area that way is a duplicate and is dropped, so the
merge also acts as mask-level non-maximum suppression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass
class InstanceMask:
    """A boolean mask crop placed at (y0, x0) of the full image, with its quality score."""

    y0: int
    x0: int
    mask: np.ndarray
    score: float

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def crop_to_content(mask: np.ndarray, y0: int = 0, x0: int = 0, score: float = 1.0,
                    ) -> InstanceMask | None:
    """Tight crop of a full or partial boolean mask; ``None`` when it is empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return InstanceMask(y0 + int(r0), x0 + int(c0), mask[r0:r1, c0:c1].copy(), score)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == sizes.argmax()


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
        free = _largest_component(free)
        region[free] = next_id
        next_id += 1
        scores.append(float(inst.score))
    return labels, np.asarray(scores, np.float32)


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber labels to 1..N in order of first appearance (row-major); keeps 0."""
    ids, first = np.unique(labels.ravel(), return_index=True)
    keep = ids != 0
    ids, first = ids[keep], first[keep]
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.uint32)
    lut[ids[np.argsort(first)]] = np.arange(1, len(ids) + 1, dtype=np.uint32)
    return lut[labels]
