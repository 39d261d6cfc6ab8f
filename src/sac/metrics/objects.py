"""Object-level (instance) metrics: IoU matrix, object F1, AJI, panoptic quality, DSB 2018 score.

All metrics start from one vectorised pass over the pixels that builds the sparse table of
(gt object, predicted object, intersection) triples; no Python loop runs over object pairs.
Labels are any non-negative integers (0 = background), not necessarily consecutive; objects
are ordered by ascending label wherever an order matters.

Matching: a GT and a predicted object match when IoU > thresh (strict). For thresh >= 0.5 every
object has at most one partner with IoU > thresh (two disjoint objects cannot both cover more
than half of the same object), so the matching is unique and no assignment is needed. For
thresh < 0.5, scipy's ``linear_sum_assignment`` finds the one-to-one matching with the most
matches (ties broken by the largest total IoU).

Empty-image convention: both images without objects -> every score 1.0; exactly one image
without objects -> every score 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from sac.metrics.pixel import MetricsInputError, check_label_pair, ratio

#: IoU thresholds of the Kaggle Data Science Bowl 2018 score: 0.50, 0.55, ..., 0.95.
DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))

# Count pair keys with a dense bincount while the (gt, pred) grid is at most this many times
# the number of overlapping pixels (or tiny); otherwise sort them with np.unique.
_DENSE_PAIRS_FACTOR = 4
_DENSE_PAIRS_MIN = 1 << 16


def _index_labels(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Present labels (ascending), their areas, and each pixel's label index (-1 = background)."""
    flat = image.ravel()
    top = int(flat.max()) if flat.size else 0
    if top <= 4 * flat.size + 65536:  # small labels: O(N) lookup table, no sort
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=1)
        labels = np.flatnonzero(counts[1:]) + 1
        lut = np.full(top + 1, -1, dtype=np.intp)
        lut[labels] = np.arange(labels.size)
        return labels.astype(image.dtype), counts[labels], lut[flat]
    labels, inverse, areas = np.unique(flat, return_inverse=True, return_counts=True)
    inverse = inverse.ravel().astype(np.intp, copy=False)
    if labels[0] == 0:
        return labels[1:], areas[1:], inverse - 1
    return labels, areas, inverse


@dataclass(frozen=True)
class Overlap:
    """Sparse overlap table of a GT / prediction pair (built by :func:`overlap`).

    ``rows[k]``, ``cols[k]`` index ``gt_labels`` / ``pred_labels`` of the k-th overlapping pair,
    whose intersection is ``inter[k]`` pixels; pairs are sorted by (row, col).
    """

    gt_labels: np.ndarray
    pred_labels: np.ndarray
    gt_areas: np.ndarray
    pred_areas: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    inter: np.ndarray

    @property
    def n_gt(self) -> int:
        return int(self.gt_labels.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_labels.size)

    @property
    def both_empty(self) -> bool:
        return self.n_gt == 0 and self.n_pred == 0

    @property
    def union(self) -> np.ndarray:
        """Union area of each overlapping pair."""
        return self.gt_areas[self.rows] + self.pred_areas[self.cols] - self.inter

    @property
    def iou(self) -> np.ndarray:
        """IoU of each overlapping pair (pairs that do not overlap have IoU 0)."""
        return self.inter / self.union.astype(np.float64)


def overlap(gt: Any, pred: Any) -> Overlap:
    """Validate a label-image pair and build its sparse overlap table in one vectorised pass."""
    gt_arr, pred_arr = check_label_pair(gt, pred)
    gt_labels, gt_areas, gi = _index_labels(gt_arr)
    pred_labels, pred_areas, pj = _index_labels(pred_arr)
    n_gt, n_pred = gt_labels.size, pred_labels.size
    both = (gi >= 0) & (pj >= 0)
    if n_gt == 0 or n_pred == 0 or not both.any():
        empty = np.zeros(0, dtype=np.int64)
        return Overlap(gt_labels, pred_labels, gt_areas, pred_areas, empty, empty, empty)
    # One integer key per (gt, pred) pair; counting keys gives every intersection at once.
    keys = gi[both].astype(np.int64) * n_pred + pj[both]
    if n_gt * n_pred <= max(_DENSE_PAIRS_FACTOR * keys.size, _DENSE_PAIRS_MIN):
        counts = np.bincount(keys, minlength=n_gt * n_pred)
        keys = np.flatnonzero(counts)
        inter = counts[keys]
    else:
        keys, inter = np.unique(keys, return_counts=True)
    rows, cols = np.divmod(keys, n_pred)
    return Overlap(gt_labels, pred_labels, gt_areas, pred_areas, rows, cols, inter)


def match_instances(gt: Any, pred: Any) -> np.ndarray:
    """IoU matrix (n_gt x n_pred, float64) between all objects of two label images.

    Row i is the i-th smallest label present in ``gt``, column j the j-th smallest present in
    ``pred`` (i.e. the order of ``np.unique(gt[gt > 0])``); absent labels get no row/column.
    """
    ov = overlap(gt, pred)
    iou = np.zeros((ov.n_gt, ov.n_pred), dtype=np.float64)
    iou[ov.rows, ov.cols] = ov.iou
    return iou


def _check_thresh(thresh: float) -> float:
    thresh = float(thresh)
    if not 0.0 <= thresh <= 1.0:  # also rejects NaN
        raise MetricsInputError(f"IoU threshold must be in [0, 1], got {thresh}")
    return thresh


def matched_pairs(ov: Overlap, thresh: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matches with IoU > ``thresh``: (gt indices, pred indices, their IoUs).

    For thresh >= 0.5 the pairs above threshold already form a unique matching. Below 0.5 an
    optimal assignment maximises the number of matches, then their total IoU.
    """
    thresh = _check_thresh(thresh)
    iou = ov.iou
    keep = iou > thresh
    rows, cols, vals = ov.rows[keep], ov.cols[keep], iou[keep]
    if thresh >= 0.5 or rows.size == 0:
        return rows, cols, vals
    # Assignment on the compact sub-problem of objects that have a candidate partner.
    urows, ri = np.unique(rows, return_inverse=True)
    ucols, ci = np.unique(cols, return_inverse=True)
    bonus = float(min(urows.size, ucols.size) + 1)  # one more match outweighs any IoU sum
    weight = np.zeros((urows.size, ucols.size), dtype=np.float64)
    weight[ri, ci] = bonus + vals
    a, b = linear_sum_assignment(weight, maximize=True)
    real = weight[a, b] > 0
    a, b = a[real], b[real]
    return urows[a], ucols[b], weight[a, b] - bonus


def _detection_counts(ov: Overlap, n_matched: int) -> dict[str, int]:
    return {"tp": n_matched, "fp": ov.n_pred - n_matched, "fn": ov.n_gt - n_matched}


def object_f1_from_overlap(ov: Overlap, thresh: float = 0.5) -> dict[str, float]:
    """:func:`object_f1` on a precomputed :class:`Overlap`."""
    rows, _, _ = matched_pairs(ov, thresh)
    counts = _detection_counts(ov, int(rows.size))
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return {
        **counts,
        "precision": ratio(tp, tp + fp, ov.both_empty),
        "recall": ratio(tp, tp + fn, ov.both_empty),
        "f1": ratio(2 * tp, 2 * tp + fp + fn, ov.both_empty),
    }


def object_f1(gt: Any, pred: Any, thresh: float = 0.5) -> dict[str, float]:
    """Object detection ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``.

    A GT and a predicted object match one-to-one when IoU > ``thresh`` (strict; unique for
    thresh >= 0.5, optimal assignment below). Unmatched predictions are FP, unmatched GT FN.
    Both images without objects -> all scores 1.0; exactly one without objects -> 0.0.
    """
    return object_f1_from_overlap(overlap(gt, pred), thresh)


def aji_from_overlap(ov: Overlap) -> float:
    """:func:`aji` on a precomputed :class:`Overlap`."""
    if ov.both_empty:
        return 1.0
    union_total = float(ov.gt_areas.sum())  # every GT object counts once in the union
    inter_total = 0.0
    used = np.zeros(ov.n_pred, dtype=bool)
    if ov.rows.size:
        # Best partner of each GT object: highest IoU, ties to the smallest pred label.
        order = np.lexsort((ov.cols, -ov.iou, ov.rows))
        _, first = np.unique(ov.rows[order], return_index=True)
        best = order[first]
        inter_total = float(ov.inter[best].sum())
        # |G ∪ S| = |G| + |S| - |G ∩ S|; |G| is already in union_total.
        union_total += float((ov.pred_areas[ov.cols[best]] - ov.inter[best]).sum())
        used[ov.cols[best]] = True
    union_total += float(ov.pred_areas[~used].sum())  # predictions nobody chose
    return inter_total / union_total


def aji(gt: Any, pred: Any) -> float:
    """Aggregated Jaccard Index (Kumar et al., IEEE TMI 2017).

    Each GT object G is paired with the predicted object S of highest IoU (ties: smallest
    label); AJI = sum |G ∩ S| / (sum |G ∪ S| + areas of predictions never chosen). A GT object
    that overlaps nothing adds its area to the union only. One prediction may be chosen by
    several GT objects, so merging objects is penalised (its pixels enter the union repeatedly).
    Both images without objects -> 1.0; exactly one without objects -> 0.0.
    """
    return aji_from_overlap(overlap(gt, pred))


def panoptic_quality_from_overlap(ov: Overlap, thresh: float = 0.5) -> dict[str, float]:
    """:func:`panoptic_quality` on a precomputed :class:`Overlap`."""
    _, _, ious = matched_pairs(ov, thresh)
    counts = _detection_counts(ov, int(ious.size))
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    dq = ratio(tp, tp + 0.5 * fp + 0.5 * fn, ov.both_empty)
    sq = ratio(float(ious.sum()), tp, ov.both_empty)
    return {**counts, "iou_sum": float(ious.sum()), "dq": dq, "sq": sq, "pq": dq * sq}


def panoptic_quality(gt: Any, pred: Any, thresh: float = 0.5) -> dict[str, float]:
    """Panoptic quality (Kirillov et al. 2019) of the single "nucleus" class.

    Matches are IoU > ``thresh`` (0.5 is the standard, unique matching). DQ = TP / (TP + FP/2 +
    FN/2), SQ = mean IoU of the matches, PQ = DQ * SQ. Also returns ``tp``, ``fp``, ``fn`` and
    ``iou_sum``. SQ is 0.0 when nothing matches. Both images without objects -> 1.0 for DQ, SQ
    and PQ; exactly one without objects -> 0.0.
    """
    return panoptic_quality_from_overlap(overlap(gt, pred), thresh)


def dsb_score_from_overlap(ov: Overlap) -> float:
    """:func:`dsb_score` on a precomputed :class:`Overlap`."""
    if ov.both_empty:
        return 1.0
    # At every threshold >= 0.5 matches are unique: TP(t) = number of pairs with IoU > t.
    tp = (ov.iou[:, None] > np.asarray(DSB_THRESHOLDS)[None, :]).sum(axis=0)
    den = ov.n_gt + ov.n_pred - tp  # TP + FP + FN, > 0 since not both empty
    return float(np.mean(tp / den))


def dsb_score(gt: Any, pred: Any) -> float:
    """Kaggle Data Science Bowl 2018 score: mean over t = 0.50, 0.55, ..., 0.95 of
    TP(t) / (TP(t) + FP(t) + FN(t)), where a match needs IoU > t (strict).

    Both images without objects -> 1.0; exactly one without objects -> 0.0.
    """
    return dsb_score_from_overlap(overlap(gt, pred))
