"""The error breakdown: each kind of mistake on synthetic disks, counted once."""

from __future__ import annotations

import numpy as np
import pytest

from sac.metrics import evaluate_pair
from sac.metrics.errors import classify, error_breakdown, total_breakdown, without_invented

from synthetic import disk_labels


def _disk(shape: tuple[int, int], cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_each_kind_of_mistake() -> None:
    shape = (120, 240)
    truth = disk_labels(shape, [(30, 30, 12), (30, 80, 12), (30, 104, 12), (30, 128, 12),
                                (90, 30, 12), (90, 80, 12), (90, 140, 12)])
    pred = np.zeros(shape, np.uint16)
    pred[truth == 1] = 5  # found exactly
    pred[(truth == 2) | (truth == 3) | (truth == 4)] = 9  # three touching nuclei as one
    five = truth == 5
    xx = np.mgrid[: shape[0], : shape[1]][1]
    pred[five & (xx < 26)] = 11  # one nucleus in three pieces
    pred[five & (xx >= 26) & (xx < 34)] = 12
    pred[five & (xx >= 34)] = 13
    # nucleus 6 is missed; nucleus 7 is outlined a radius off its place (IoU 0.24)
    pred[_disk(shape, 90, 152, 12)] = 20
    pred[_disk(shape, 60, 200, 8)] = 30  # on the background: invented
    counts = error_breakdown(truth, pred)
    assert counts == {"n_gt": 7, "n_pred": 7, "gt_matched": 1, "gt_merged": 3, "gt_split": 1,
                      "gt_missed": 1, "gt_poor": 1, "pred_matched": 1, "pred_invented": 1,
                      "pred_other": 5}
    # matched counts agree with object F1's true positives
    f1 = evaluate_pair(truth, pred)
    assert f1["obj_tp"] == counts["gt_matched"] == counts["pred_matched"]
    c = classify(truth, pred)
    assert dict(zip(c.gt_labels.tolist(), c.gt_class.tolist(), strict=True)) == {
        1: "matched", 2: "merged", 3: "merged", 4: "merged", 5: "split", 6: "missed", 7: "poor"}
    assert dict(zip(c.pred_labels.tolist(), c.pred_class.tolist(), strict=True))[30] == "invented"
    cleaned = without_invented(truth, pred)
    assert not (cleaned == 30).any() and (cleaned == pred)[pred != 30].all()
    # a merge of two equal nuclei still matches the larger (IoU just over 0.5), as F1 has it
    pair = np.where((truth == 2) | (truth == 3), 1, 0)
    two = error_breakdown(np.where(truth == 3, 3, np.where(truth == 2, 2, 0)), pair)
    assert two["gt_matched"] == 1 and two["gt_merged"] == 1


def test_empty_images_and_totals() -> None:
    truth = disk_labels((40, 40), [(20, 20, 8)])
    empty = np.zeros((40, 40), np.uint8)
    assert error_breakdown(truth, empty)["gt_missed"] == 1
    assert error_breakdown(empty, truth)["pred_invented"] == 1
    assert error_breakdown(empty, empty)["n_gt"] == 0
    total = total_breakdown([error_breakdown(truth, empty), error_breakdown(truth, truth)])
    assert total["n_gt"] == 2 and total["gt_missed"] == 1 and total["gt_matched"] == 1
    assert total["gt_missed_share"] == 0.5 and total["pred_matched_share"] == 1.0
    with pytest.raises(ValueError, match="shape"):
        error_breakdown(truth, empty[:30])
