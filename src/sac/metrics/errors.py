"""What kind of mistakes a segmentation makes: each true nucleus found, merged with a
neighbour, split, missed or badly outlined, and each predicted one true or invented.

AJI and object F1 say how much is wrong, not what; a detector that merges touching nuclei
needs a different fix (targets that separate them) from one that misses faint nuclei or one
whose masks are too small. The classes follow from the sparse overlap table
(:func:`sac.metrics.objects.overlap`), with ``cover(g, p)`` the share of true nucleus ``g``
that prediction ``p`` covers:

* true nuclei, each in the first class that applies: ``matched`` (IoU > 0.5 with a
  prediction, as object F1 counts it); ``merged`` (a prediction covers at least half of it
  and at least half of another true nucleus); ``split`` (two or more predictions each cover
  at least :data:`PART` of it); ``missed`` (predictions cover less than :data:`PART` of it in
  all); ``poor`` (found, but no mask fits it with IoU > 0.5);
* predictions: ``matched``; ``invented`` (less than :data:`PART` of it lies on true nuclei);
  ``other`` (on true nuclei without matching one: parts of splits, merges, poor masks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sac.metrics.objects import overlap

#: the share of an object that counts as covered (a part of a split, a miss below it)
PART = 0.2
GT_CLASSES = ("matched", "merged", "split", "missed", "poor")
PRED_CLASSES = ("matched", "invented", "other")


@dataclass(frozen=True)
class Classified:
    """Each true nucleus's and each prediction's class, in ascending label order."""

    gt_labels: np.ndarray
    gt_class: np.ndarray  # object array of GT_CLASSES names
    pred_labels: np.ndarray
    pred_class: np.ndarray  # object array of PRED_CLASSES names

    def counts(self) -> dict[str, int]:
        """``n_gt``, ``n_pred`` and the number in each class (``gt_<c>``, ``pred_<c>``)."""
        out = {"n_gt": int(self.gt_labels.size), "n_pred": int(self.pred_labels.size)}
        out.update({f"gt_{c}": int(np.count_nonzero(self.gt_class == c)) for c in GT_CLASSES})
        out.update({f"pred_{c}": int(np.count_nonzero(self.pred_class == c))
                    for c in PRED_CLASSES})
        return out


def classify(gt: Any, pred: Any) -> Classified:
    """The classes above for one pair of label images of the same shape."""
    ov = overlap(gt, pred)
    n_gt, n_pred = ov.n_gt, ov.n_pred
    cover = ov.inter / ov.gt_areas[ov.rows].astype(np.float64)  # share of g under p
    share = ov.inter / ov.pred_areas[ov.cols].astype(np.float64)  # share of p on g
    matched_gt = np.zeros(n_gt, bool)
    matched_pred = np.zeros(n_pred, bool)
    hit = ov.iou > 0.5
    matched_gt[ov.rows[hit]] = True
    matched_pred[ov.cols[hit]] = True
    # a prediction covering at least half of two or more true nuclei merges them
    halves = np.bincount(ov.cols[cover >= 0.5], minlength=n_pred)
    merged = np.zeros(n_gt, bool)
    merged[ov.rows[(cover >= 0.5) & (halves[ov.cols] >= 2)]] = True
    parts = np.bincount(ov.rows[cover >= PART], minlength=n_gt)
    covered = np.bincount(ov.rows, weights=cover, minlength=n_gt)
    gt_class = np.full(n_gt, "poor", dtype=object)
    gt_class[covered < PART] = "missed"
    gt_class[parts >= 2] = "split"
    gt_class[merged] = "merged"
    gt_class[matched_gt] = "matched"
    on_truth = np.bincount(ov.cols, weights=share, minlength=n_pred)
    pred_class = np.full(n_pred, "other", dtype=object)
    pred_class[on_truth < PART] = "invented"
    pred_class[matched_pred] = "matched"
    return Classified(ov.gt_labels, gt_class, ov.pred_labels, pred_class)


def error_breakdown(gt: Any, pred: Any) -> dict[str, int]:
    """Counts of the classes above, keys ``gt_<class>`` and ``pred_<class>``, plus ``n_gt``
    and ``n_pred``, for one pair of label images of the same shape."""
    return classify(gt, pred).counts()


def without_invented(gt: Any, pred: Any, classified: Classified | None = None) -> np.ndarray:
    """``pred`` with its invented nuclei erased: what a perfect false-positive filter would
    leave (an upper bound on what filtering can gain). ``classified``: the pair's
    :func:`classify` result, when the caller has it already."""
    c = classified if classified is not None else classify(gt, pred)
    pred = np.asarray(pred)
    return np.where(np.isin(pred, c.pred_labels[c.pred_class == "invented"]), 0, pred)


def total_breakdown(counts: Iterable[Mapping[str, int]]) -> dict[str, float]:
    """Counts summed over images, and each class as a share of all true nuclei (``gt_*``)
    or of all predictions (``pred_*``), as ``<key>_share``."""
    total: dict[str, float] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0.0) + v
    shares = {}
    for k, count in total.items():
        if k.startswith(("gt_", "pred_")):
            n = total.get("n_gt" if k.startswith("gt_") else "n_pred", 0.0)
            shares[f"{k}_share"] = round(count / n, 4) if n else 0.0
    return total | shares
