"""Completing instance labels from the semantic mask.

The instance labels come from one prompt set per detected nucleus, so a nucleus the generator
missed is missing, and an instance mask that falls short of its nucleus leaves a rim. The
semantic mask (one prompt set per tile) often covers both. Two optional repairs, chosen per
model on its validation images (``sac tune``):

* ``new_area``: a semantic region that touches no instance becomes a new nucleus when it has
  at least this many pixels (0 = off);
* ``attach``: semantic pixels that touch an instance join the nearest instance.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def complete_from_semantic(labels: np.ndarray, semantic: np.ndarray, new_area: int = 0,
                           attach: bool = False, blocked: np.ndarray | None = None
                           ) -> tuple[np.ndarray, int]:
    """Labels with the semantic mask's uncovered regions added; returns (labels, n_new).

    ``labels`` (H, W) integer instance labels and ``semantic`` (H, W) bool, on the same grid.
    ``blocked``: (N, 2) ``x, y`` points (an expert's background clicks) whose regions stay
    background. New nuclei are numbered after the largest existing label. ``labels`` is not
    modified.
    """
    if labels.shape != semantic.shape:
        raise ValueError(f"labels {labels.shape} and semantic mask {semantic.shape} differ "
                         "in shape")
    out = labels.copy()
    left = semantic.astype(bool) & (labels == 0)
    if (new_area <= 0 and not attach) or not left.any():
        return out, 0
    comps, _ = ndi.label(left)
    near = ndi.binary_dilation(labels > 0)  # pixels next to (or inside) an instance
    touching = np.unique(comps[near & left])
    touches = np.zeros(comps.max() + 1, bool)
    touches[touching] = True
    touches[0] = False
    if blocked is not None and len(blocked):
        h, w = labels.shape
        xy = np.clip(np.rint(np.asarray(blocked)).astype(np.int64), 0, [w - 1, h - 1])
        left[np.isin(comps, comps[xy[:, 1], xy[:, 0]])] = False
        comps[~left] = 0
    n_new = 0
    if new_area > 0:
        sizes = np.bincount(comps.ravel())
        new = np.flatnonzero(~touches[: sizes.size] & (sizes >= new_area))
        new = new[new > 0]
        if new.size:
            lut = np.zeros(comps.max() + 1, out.dtype)
            lut[new] = np.arange(1, new.size + 1) + (int(labels.max()) if labels.size else 0)
            added = lut[comps]
            out = np.where(added > 0, added, out)
            n_new = int(new.size)
    if attach and touches.any() and labels.any():
        # nearest instance pixel for every pixel; only the touching regions take it
        _, (iy, ix) = ndi.distance_transform_edt(labels == 0, return_indices=True)
        grow = touches[comps]
        out[grow] = labels[iy[grow], ix[grow]]
    return out, n_new
