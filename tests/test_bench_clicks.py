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


def test_the_user_removes_the_merge_first_then_adds_the_missed_then_removes_the_invented(
        ) -> None:
    gt = _truth()
    pred = np.zeros_like(gt)
    pred[gt == 1] = 7
    pred[(gt == 2) | (gt == 3)] = 8  # the merge: 2 x ~200 px, the largest error
    pred[_disk(gt.shape, 60, 100, 5)] = 9  # invented, on background
    tried: set[tuple[object, ...]] = set()
    first = clicks.next_fix(gt, pred, tried)
    assert first is not None and not first[0] and first[3] == 8  # negative, on the merge
    assert pred[int(first[2]), int(first[1])] == 8
    pred[pred == 8] = 0  # as the Corrector does with a click at its core
    second = clicks.next_fix(gt, pred, tried)  # the largest missed nucleus: 4 (r 10)
    assert second is not None and second[0] and second[3] == 4
    assert (second[1], second[2]) == (30.0, 60.0)  # at its deepest point, its centre
    third = clicks.next_fix(gt, pred, tried)  # 2 and 3 next: a click made is not repeated
    assert third is not None and third[0] and third[3] in (2, 3)


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
