"""The simulated user of benchmarks/clicks.py: which error it clicks first, and where."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import clicks  # the benchmark module: numpy, scipy and sac at import


def _disk(shape: tuple[int, int], cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _truth() -> np.ndarray:
    gt = np.zeros((80, 120), np.uint16)
    gt[_disk(gt.shape, 20, 20, 8)] = 1  # found
    gt[_disk(gt.shape, 20, 50, 8)] = 2  # 2 and 3 touch: merged into one prediction
    gt[_disk(gt.shape, 20, 66, 8) & (gt == 0)] = 3
    gt[_disk(gt.shape, 60, 30, 10)] = 4  # missed, the largest true nucleus
    return gt


def test_the_user_fixes_the_largest_error_first_and_splits_a_merge_by_clicking_inside(
        ) -> None:
    gt = _truth()
    pred = np.zeros_like(gt)
    pred[gt == 1] = 7
    pred[(gt == 2) | (gt == 3)] = 8  # the merge
    pred[_disk(gt.shape, 60, 100, 5)] = 9  # invented, on background
    tried: set[tuple[object, ...]] = set()
    first = clicks.next_fix(gt, pred, tried)  # the largest error: missed nucleus 4 (r 10)
    assert first == (True, 30.0, 60.0, 4)  # positive, at its deepest point, its centre
    pred[gt == 4] = 10  # as if SAM had added it
    second = clicks.next_fix(gt, pred, tried)  # then the merge: a click inside it, on the
    assert second is not None and second[0] and second[3] in (2, 3)  # nucleus it does not
    assert pred[int(second[2]), int(second[1])] == 8  # keep (its core is in the other)
    core = clicks.deepest_point(pred, 8)
    assert gt[core] != second[3]
    third = clicks.next_fix(gt, pred, tried)  # a click made is not repeated: the invented
    assert third is not None and not third[0] and third[3] == 9  # one goes, at its core
    assert (third[2], third[1]) == (60.0, 100.0)
    assert clicks.next_fix(gt, pred, tried) is None  # nothing else to click


def test_nothing_left_to_click_on_a_perfect_segmentation_and_no_click_twice() -> None:
    gt = _truth()
    assert clicks.next_fix(gt, gt.copy(), set()) is None
    pred = np.zeros_like(gt)
    pred[_disk(gt.shape, 60, 100, 5)] = 9
    tried: set[tuple[object, ...]] = set()
    made = []
    while (click := clicks.next_fix(gt, pred, tried)) is not None:  # nothing acts on them
        made.append(click)
    assert len(made) == len(set(made)) == 5  # 4 missed, 1 invented, each once
