"""Input checks shared by all metrics, and the pixel-level (semantic) scores of the SAC paper.

Pixel scores treat every pixel with label > 0 as foreground and ignore instance identity:
TP = foreground in both images, FP = foreground only in the prediction, FN = foreground only
in the ground truth. Dice = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN). At pixel level
F1 equals Dice; both names are kept because the paper reports both.

Empty-image convention (the same for every metric in :mod:`sac.metrics`): both images empty
-> 1.0 (nothing to find, nothing wrongly found); exactly one empty -> 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sac.core import labels
from sac.core.errors import InputError


class MetricsInputError(InputError, ValueError):
    """A label image given to a metric has the wrong type, shape, dtype or values.

    It is a :class:`ValueError` (what callers of numeric code expect) and an
    :class:`~sac.core.errors.InputError` (so the CLI prints the message without a traceback).
    """


def check_label_image(image: Any, name: str = "labels") -> np.ndarray:
    """Return ``image`` as a 2-D integer array with labels >= 0, or raise MetricsInputError.

    Any integer dtype is accepted and labels need not be consecutive; 0 is background.
    Bool masks are rejected so a mask is never silently read as a single object by accident.
    """
    return labels.check_label_image(image, name, bool_ok=False, squeeze=False,
                                    error=MetricsInputError)


def check_label_pair(gt: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a ground-truth / prediction pair of label images of the same shape."""
    gt_arr = check_label_image(gt, "gt")
    pred_arr = check_label_image(pred, "pred")
    if gt_arr.shape != pred_arr.shape:
        raise MetricsInputError(
            f"gt and pred must have the same shape, got gt {gt_arr.shape} and pred "
            f"{pred_arr.shape}"
        )
    return gt_arr, pred_arr


def ratio(num: float, den: float, both_empty: bool) -> float:
    """``num / den``, or the empty-case value when ``den == 0`` (1.0 if both empty, else 0.0)."""
    if den > 0:
        return float(num) / float(den)
    return 1.0 if both_empty else 0.0


def _dice_iou(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise Dice and IoU from count arrays; 1.0 where all counts are zero (both empty)."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    den_dice = 2 * tp + fp + fn
    den_iou = tp + fp + fn
    empty = den_iou == 0
    dice = np.where(empty, 1.0, 2 * tp / np.where(empty, 1.0, den_dice))
    iou = np.where(empty, 1.0, tp / np.where(empty, 1.0, den_iou))
    return dice, iou


def pixel_counts(gt: Any, pred: Any) -> dict[str, int]:
    """Foreground pixel counts ``tp``, ``fp``, ``fn`` (label > 0 is foreground)."""
    gt_arr, pred_arr = check_label_pair(gt, pred)
    fg_gt = gt_arr > 0
    fg_pred = pred_arr > 0
    tp = int(np.count_nonzero(fg_gt & fg_pred))
    return {
        "tp": tp,
        "fp": int(np.count_nonzero(fg_pred)) - tp,
        "fn": int(np.count_nonzero(fg_gt)) - tp,
    }


def scores_from_counts(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Pixel ``dice``, ``iou`` and ``f1`` (== dice) from foreground counts."""
    dice, iou = _dice_iou(np.array(tp), np.array(fp), np.array(fn))
    return {"dice": float(dice), "iou": float(iou), "f1": float(dice)}


def pixel_scores(gt: Any, pred: Any) -> dict[str, float]:
    """Pixel-level ``tp``, ``fp``, ``fn`` and ``dice``, ``iou``, ``f1`` of two label images.

    Only foreground (label > 0) vs background matters. Both images empty -> all scores 1.0;
    exactly one empty -> 0.0. ``f1`` equals ``dice`` (kept because the paper reports both).
    """
    counts = pixel_counts(gt, pred)
    return {**counts, **scores_from_counts(counts["tp"], counts["fp"], counts["fn"])}


def aggregate_pixel(results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Combine per-image pixel counts (dicts with ``tp``, ``fp``, ``fn``) over a dataset.

    Two aggregations are reported because papers use both and they can differ a lot:

    - ``pixel_dice``, ``pixel_iou``, ``pixel_f1``: the mean over images of the per-image score
      (every image weighs the same; empty-image conventions apply per image).
    - ``pixel_dice_sum``, ``pixel_iou_sum``, ``pixel_f1_sum``: dataset-level scores computed
      once from TP, FP, FN summed over all images (large images weigh more).

    Also returns the summed counts ``pixel_tp``, ``pixel_fp``, ``pixel_fn`` and ``n_images``.
    Raises ValueError on an empty sequence or a dict without the counts.
    """
    if len(results) == 0:
        raise MetricsInputError("aggregate_pixel: no per-image results to aggregate")
    try:
        counts = np.array([[r["tp"], r["fp"], r["fn"]] for r in results], dtype=np.int64)
    except KeyError as err:
        raise MetricsInputError(
            f"aggregate_pixel: every result needs 'tp', 'fp' and 'fn' counts; missing {err}"
        ) from None
    dice, iou = _dice_iou(counts[:, 0], counts[:, 1], counts[:, 2])
    tp, fp, fn = (int(v) for v in counts.sum(axis=0))
    total = scores_from_counts(tp, fp, fn)
    return {
        "pixel_dice": float(dice.mean()),
        "pixel_iou": float(iou.mean()),
        "pixel_f1": float(dice.mean()),
        "pixel_dice_sum": total["dice"],
        "pixel_iou_sum": total["iou"],
        "pixel_f1_sum": total["f1"],
        "pixel_tp": tp,
        "pixel_fp": fp,
        "pixel_fn": fn,
        "n_images": len(results),
    }
