"""Segmentation metrics for nucleus label images (numpy + scipy only).

Inputs are 2-D integer label images of equal shape: 0 = background, any other value is an
object id (any integer dtype, ids need not be consecutive). Wrong shape, dtype or negative ids
raise :class:`MetricsInputError` (a ValueError).

- pixel level (foreground vs background): :func:`pixel_scores`, :func:`aggregate_pixel`;
- object level: :func:`match_instances` (IoU matrix), :func:`object_f1`, :func:`aji`,
  :func:`panoptic_quality`, :func:`dsb_score`;
- everything at once: :func:`evaluate_pair` per image and :func:`aggregate` over a dataset;
- what kind of mistakes (merged, split, missed, invented nuclei): :mod:`sac.metrics.errors`.

Empty-image convention for every score: GT and prediction both empty -> 1.0 (perfect);
exactly one of them empty -> 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sac.metrics.objects import (
    DSB_THRESHOLDS,
    Overlap,
    aji,
    aji_from_overlap,
    dsb_score,
    dsb_score_from_overlap,
    match_instances,
    object_f1,
    object_f1_from_overlap,
    overlap,
    panoptic_quality,
    panoptic_quality_from_overlap,
)
from sac.metrics.pixel import (
    MetricsInputError,
    aggregate_pixel,
    check_label_pair,
    pixel_counts,
    pixel_scores,
    scores_from_counts,
)

#: Per-image scores of :func:`evaluate_pair`; :func:`aggregate` averages them over images.
SCORE_KEYS: tuple[str, ...] = (
    "pixel_dice",
    "pixel_iou",
    "pixel_f1",
    "f1_obj",
    "precision_obj",
    "recall_obj",
    "aji",
    "dq",
    "sq",
    "pq",
    "dsb_score",
)
#: Per-image counts of :func:`evaluate_pair`; :func:`aggregate` sums them over images.
COUNT_KEYS: tuple[str, ...] = (
    "pixel_tp",
    "pixel_fp",
    "pixel_fn",
    "obj_tp",
    "obj_fp",
    "obj_fn",
    "n_gt",
    "n_pred",
)


def evaluate_pair(gt: Any, pred: Any, thresh: float = 0.5) -> dict[str, float]:
    """All metrics of one GT / prediction pair, sharing a single overlap computation.

    Scores (:data:`SCORE_KEYS`): ``pixel_dice``, ``pixel_iou``, ``pixel_f1`` (pixel level);
    ``f1_obj``, ``precision_obj``, ``recall_obj`` (object matching at IoU > ``thresh``);
    ``aji``; ``dq``, ``sq``, ``pq`` (panoptic quality at IoU > ``thresh``); ``dsb_score``.
    Counts (:data:`COUNT_KEYS`) for dataset-level aggregation: ``pixel_tp``, ``pixel_fp``,
    ``pixel_fn``, ``obj_tp``, ``obj_fp``, ``obj_fn``, ``n_gt``, ``n_pred``.
    Both images empty -> every score 1.0; exactly one empty -> every score 0.0.
    """
    gt_arr, pred_arr = check_label_pair(gt, pred)
    px = pixel_counts(gt_arr, pred_arr)
    px_scores = scores_from_counts(px["tp"], px["fp"], px["fn"])
    ov = overlap(gt_arr, pred_arr)
    det = object_f1_from_overlap(ov, thresh)
    pq = panoptic_quality_from_overlap(ov, thresh)
    return {
        "pixel_dice": px_scores["dice"],
        "pixel_iou": px_scores["iou"],
        "pixel_f1": px_scores["f1"],
        "f1_obj": det["f1"],
        "precision_obj": det["precision"],
        "recall_obj": det["recall"],
        "aji": aji_from_overlap(ov),
        "dq": pq["dq"],
        "sq": pq["sq"],
        "pq": pq["pq"],
        "dsb_score": dsb_score_from_overlap(ov),
        "pixel_tp": px["tp"],
        "pixel_fp": px["fp"],
        "pixel_fn": px["fn"],
        "obj_tp": det["tp"],
        "obj_fp": det["fp"],
        "obj_fn": det["fn"],
        "n_gt": ov.n_gt,
        "n_pred": ov.n_pred,
    }


def aggregate(results: Sequence[Mapping[str, Any]],
              groups: Sequence[str] | None = None) -> dict[str, float]:
    """Dataset summary of :func:`evaluate_pair` results.

    Every key of :data:`SCORE_KEYS` becomes its mean over images (each image weighs the same),
    every key of :data:`COUNT_KEYS` its sum. Dataset-level pixel scores computed from the summed
    pixel counts are added as ``pixel_dice_sum``, ``pixel_iou_sum``, ``pixel_f1_sum`` (see
    :func:`aggregate_pixel`), plus ``n_images``. Raises ValueError on an empty sequence or on a
    result that lacks one of the keys.

    ``groups`` (one name per result, e.g. the dataset each image comes from) makes every
    score the mean over groups of the group's mean, so each group weighs the same however
    many images it has: what a generalist's checkpoint and thresholds are chosen by, so 6
    H&E images are not outvoted by 24 DSB ones. One group gives the plain mean.
    """
    if len(results) == 0:
        raise MetricsInputError("aggregate: no per-image results to aggregate")
    if groups is not None and len(groups) != len(results):
        raise MetricsInputError(f"aggregate: {len(groups)} groups for {len(results)} results; "
                                "give one group name per result")
    if groups is not None and len(set(groups)) > 1:
        pooled = aggregate(results)
        parts = aggregate_groups(results, groups).values()
        pooled.update({k: float(np.mean([p[k] for p in parts], dtype=np.float64))
                       for k in SCORE_KEYS})
        return pooled
    missing = [k for k in (*SCORE_KEYS, *COUNT_KEYS) if any(k not in r for r in results)]
    if missing:
        raise MetricsInputError(
            f"aggregate: results lack keys {missing}; pass the dicts made by evaluate_pair"
        )
    out: dict[str, float] = {
        k: float(np.mean([r[k] for r in results], dtype=np.float64)) for k in SCORE_KEYS
    }
    out.update({k: int(sum(int(r[k]) for r in results)) for k in COUNT_KEYS})
    pixel = aggregate_pixel(
        [{"tp": r["pixel_tp"], "fp": r["pixel_fp"], "fn": r["pixel_fn"]} for r in results]
    )
    out.update({k: pixel[k] for k in ("pixel_dice_sum", "pixel_iou_sum", "pixel_f1_sum")})
    out["n_images"] = len(results)
    return out


def aggregate_groups(results: Sequence[Mapping[str, Any]],
                     groups: Sequence[str]) -> dict[str, dict[str, float]]:
    """Each group's own :func:`aggregate` (plain mean over its images), by group name in
    sorted order; ``groups`` holds one name per result."""
    if len(groups) != len(results):
        raise MetricsInputError(f"aggregate: {len(groups)} groups for {len(results)} results; "
                                "give one group name per result")
    return {name: aggregate([r for r, g in zip(results, groups, strict=True) if g == name])
            for name in sorted(set(groups))}


__all__ = [
    "COUNT_KEYS",
    "DSB_THRESHOLDS",
    "SCORE_KEYS",
    "MetricsInputError",
    "Overlap",
    "aggregate",
    "aggregate_groups",
    "aggregate_pixel",
    "aji",
    "check_label_pair",
    "dsb_score",
    "evaluate_pair",
    "match_instances",
    "object_f1",
    "overlap",
    "panoptic_quality",
    "pixel_scores",
]
