"""Instance-label images: the one validator, relabelling, and mask crops.

A label image is 2-D, one non-negative integer id per pixel, 0 = background. Every reader,
writer and metric checks its label images with :func:`check_label_image`; they differ only in
what they accept besides integers (a bool mask is one object to a writer, but a likely mistake
to a metric), which each states through the function's keywords.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from sac.core.errors import InputError

#: ids up to this are handled directly; above it :func:`compact_ids` renumbers first
MAX_DIRECT_ID = 1 << 20


def check_label_image(arr: object, source: str = "labels", *, bool_ok: bool = True,
                      float_ok: bool = False, squeeze: bool = True,
                      error: type[InputError] = InputError) -> np.ndarray:
    """``arr`` as a 2-D array of ids >= 0, or ``error`` saying what is wrong with it.

    A bool mask becomes uint8 when ``bool_ok`` (one object), and is refused otherwise; floats
    holding whole numbers are accepted when ``float_ok`` (returned as they are). With
    ``squeeze`` a single trailing channel, (H, W, 1), is dropped.
    """
    a = np.asarray(arr)
    if squeeze and a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        hint = (" (a colour image: instance labels must be one integer id per pixel, not RGB "
                "colours; export the label map as a 16-bit gray PNG or TIFF)"
                if a.ndim == 3 and a.shape[2] in (3, 4) else "")
        raise error(f"{source}: a label image must be 2-D (H, W), got shape {a.shape}{hint}")
    if a.dtype == bool:
        if bool_ok:
            return a.astype(np.uint8)
        raise error(f"{source}: expected an integer label image (0 = background, >0 = object "
                    "ids), got a bool mask (convert it with .astype(np.uint8))")
    if np.issubdtype(a.dtype, np.floating) and float_ok:
        if not np.isfinite(a).all() or not np.array_equal(a, np.round(a)):
            raise error(f"{source}: label image has non-integer values; instance labels must "
                        "be whole numbers (0 = background, 1..N = objects)")
    elif not np.issubdtype(a.dtype, np.integer):
        raise error(f"{source}: expected an integer label image (0 = background, >0 = object "
                    f"ids), got dtype {a.dtype}")
    if a.size and (a.dtype.kind in "if") and a.min() < 0:
        raise error(f"{source}: label image has negative values (minimum {a.min()}); ids "
                    "must be >= 0: use 0 for background and 1..N for objects")
    return a


def label_dtype(labels: np.ndarray) -> type[np.unsignedinteger]:
    """uint16 while labels fit, uint32 above 65,535 nuclei."""
    return np.uint16 if int(labels.max(initial=0)) <= np.iinfo(np.uint16).max else np.uint32


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber labels to 1..N in order of first appearance (row-major); keeps 0."""
    ids, first = np.unique(labels.ravel(), return_index=True)
    keep = ids != 0
    ids, first = ids[keep], first[keep]
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.uint32)
    lut[ids[np.argsort(first)]] = np.arange(1, len(ids) + 1, dtype=np.uint32)
    return lut[labels]


def keep_ids(labels: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` (ids 1..n) with only the ids whose ``keep[id - 1]`` is true, renumbered
    1..m in their old order (their rank), and the old id of each new one (``kept[i]`` is the
    old id of new id ``i + 1``)."""
    ids = np.arange(1, len(keep) + 1)
    if keep.all():
        return labels, ids
    kept = ids[keep]
    lut = np.zeros(len(keep) + 1, labels.dtype)
    lut[kept] = np.arange(1, len(kept) + 1)
    return lut[labels], kept


def drop_missing_ids(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`keep_ids` without the ids of 1..``n`` that no pixel holds any more (a nucleus
    thinner than a pixel after downsampling)."""
    return keep_ids(labels, np.bincount(labels.ravel(), minlength=n + 1)[1:n + 1] > 0)


def compact_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(work, ids)``: ``labels`` and None, or, when ids are huge (uint32 up to 4e9), a copy
    relabelled 1..n with ``ids[k]`` the original id of value ``k`` (scipy's find_objects and
    scikit-image's regionprops allocate one entry per possible id)."""
    if int(labels.max(initial=0)) <= MAX_DIRECT_ID:
        return labels, None
    ids = np.unique(labels)
    if ids[0] != 0:
        ids = np.concatenate([[0], ids])
    return np.searchsorted(ids, labels), ids


def largest_component(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    """The largest connected piece of a bool mask (4-connected unless ``structure`` says
    otherwise; the first of equal-sized pieces); the mask itself when it has at most one
    piece."""
    lab, n = ndi.label(mask, structure=structure)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == sizes.argmax()


def innermost_pixel(mask: np.ndarray) -> tuple[int, int, float]:
    """(row, col) of the pixel of a bool ``mask`` farthest from its outside (the array's edge
    counts as outside), and that distance: a nucleus's core, where a point prompt or a click
    goes even when its centroid falls outside it."""
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(r), int(c), float(dist[r, c])


@dataclass
class InstanceMask:
    """One object's mask as a tight crop placed at ``(y0, x0)`` of a larger image."""

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
