"""Regrouping given nuclei by the model's detections: merges split, fragments joined, objects
with no nucleus dropped, agreeing objects untouched."""

from __future__ import annotations

import numpy as np
import pytest

from sac.pipeline.regroup import regroup


def disk(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray]:
    """Given labels with one good nucleus (7), a merge of two (3), a nucleus cut in two halves
    (4, 5) and a patch of texture (9); the detections find the four true nuclei."""
    shape = (80, 120)
    det = np.zeros(shape, np.uint32)
    given = np.zeros(shape, np.uint32)
    truths = [disk(shape, 20, 20, 8), disk(shape, 20, 50, 8), disk(shape, 20, 66, 8),
              disk(shape, 60, 40, 9)]
    for k, t in enumerate(truths, 1):
        det[t & (det == 0)] = k
    given[truths[0]] = 7
    given[truths[1] | truths[2]] = 3
    xx = np.mgrid[: shape[0], : shape[1]][1]
    given[truths[3] & (xx < 40)] = 4
    given[truths[3] & (xx >= 40)] = 5
    given[60:70, 90:105] = 9
    return given, det


def test_regroup_splits_joins_and_drops(scene: tuple[np.ndarray, np.ndarray]) -> None:
    given, det = scene
    out = regroup(given, det)
    assert (out.split, out.joined, out.dropped) == (1, 1, 1)
    labels = out.labels
    assert np.array_equal(labels == 7, given == 7)  # agreeing object: same pixels, same id
    assert not (labels[60:70, 90:105] > 0).any()  # texture dropped
    # the merge became two nuclei along the detections' border, one keeping id 3
    left, right = labels[20, 50], labels[20, 66]
    assert left != right and 3 in (left, right) and min(left, right) > 0
    assert max(left, right) > given.max()  # the new nucleus numbered after the given ids
    assert np.array_equal(labels > 0, (given > 0) & (given != 9))  # pixels kept, not moved
    # the two halves joined into one nucleus under one of their ids
    joined = np.unique(labels[given == 4].tolist() + labels[given == 5].tolist())
    assert len(joined) == 1 and joined[0] in (4, 5)


def test_regroup_of_agreeing_labels_changes_nothing(scene: tuple[np.ndarray, np.ndarray]
                                                    ) -> None:
    _, det = scene
    out = regroup(det, det)
    assert np.array_equal(out.labels, det)
    assert (out.split, out.joined, out.dropped) == (0, 0, 0)


def test_small_overlaps_do_not_link(scene: tuple[np.ndarray, np.ndarray]) -> None:
    """A detection grazing a given object (under half of either) neither splits nor joins it."""
    given, det = scene
    graze = np.zeros_like(det)
    graze[det == 1] = 1
    graze[10:30, 27:31] = 2  # a thin detection touching nucleus 7's edge
    only7 = np.where(given == 7, 7, 0).astype(np.uint32)
    out = regroup(only7, graze)
    assert np.array_equal(out.labels, only7)
    assert (out.split, out.joined, out.dropped) == (0, 0, 0)


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="differ"):
        regroup(np.zeros((4, 4), np.uint32), np.zeros((4, 5), np.uint32))
