"""The one label-image validator and the label helpers of sac.core.labels."""

from __future__ import annotations

import numpy as np
import pytest

from sac.core.errors import InputError
from sac.core.labels import (
    check_label_image,
    compact_ids,
    crop_to_content,
    drop_missing_ids,
    largest_component,
    relabel_sequential,
)
from sac.metrics.pixel import MetricsInputError, check_label_pair


def test_each_caller_states_what_it_accepts() -> None:
    mask = np.zeros((4, 5), bool)
    mask[1, 1] = True
    out = check_label_image(mask)  # a writer: a mask is one object
    assert out.dtype == np.uint8 and out.sum() == 1
    with pytest.raises(InputError, match="bool mask"):
        check_label_image(mask, bool_ok=False)
    floats = np.array([[0.0, 2.0]])
    with pytest.raises(InputError, match="integer"):
        check_label_image(floats)
    assert check_label_image(floats, float_ok=True).tolist() == [[0.0, 2.0]]
    with pytest.raises(InputError, match="non-integer"):
        check_label_image(np.array([[0.5]]), float_ok=True)
    assert check_label_image(np.zeros((3, 3, 1), np.uint16)).shape == (3, 3)
    with pytest.raises(InputError, match="2-D"):
        check_label_image(np.zeros((3, 3, 1), np.uint16), squeeze=False)
    with pytest.raises(InputError, match="RGB"):
        check_label_image(np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(InputError, match="negative"):
        check_label_image(np.array([[0, -1]]))


def test_metrics_refuse_what_readers_accept() -> None:
    """The same validator: the metrics' stricter policy raises their ValueError subclass."""
    gt = np.zeros((4, 4), np.int32)
    with pytest.raises(MetricsInputError):
        check_label_pair(gt, gt.astype(bool))
    with pytest.raises(ValueError, match=">= 0"):
        check_label_pair(gt, gt - 1)


def test_largest_component_and_relabel() -> None:
    mask = np.zeros((6, 9), bool)
    mask[0:2, 0:2] = True  # 4 px
    mask[3:6, 3:6] = True  # 9 px
    mask[2, 2] = True  # touches the first piece diagonally only
    assert largest_component(mask).sum() == 9  # 4-connected: pieces of 4, 1 and 9
    assert largest_component(mask, np.ones((3, 3), bool)).sum() == 14  # 8-connected: one
    lab = np.array([[0, 7, 7], [3, 0, 9]], np.uint32)
    assert relabel_sequential(lab).tolist() == [[0, 1, 1], [2, 0, 3]]
    work, ids = compact_ids(np.array([[0, 4_000_000_000]], np.uint32))
    assert work.tolist() == [[0, 1]] and ids.tolist() == [0, 4_000_000_000]


def test_drop_missing_ids_keeps_order() -> None:
    """A nucleus one pixel wide at the model's resolution can vanish when labels are
    downsampled; the others keep their order (their rank) and ids stay 1..m."""
    lab = np.array([[3, 3, 0, 1], [3, 3, 0, 1]], np.uint16)  # id 2 and 4 hold no pixel
    out, kept = drop_missing_ids(lab, 4)
    assert out.tolist() == [[2, 2, 0, 1], [2, 2, 0, 1]] and kept.tolist() == [1, 3]
    assert out.dtype == lab.dtype
    same, kept = drop_missing_ids(out, 2)
    assert same is out and kept.tolist() == [1, 2]
    empty, kept = drop_missing_ids(np.zeros((2, 2), np.uint16), 0)
    assert not empty.any() and kept.size == 0


def test_crop_to_content() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2:4, 5:8] = True
    inst = crop_to_content(mask, y0=100, x0=200, score=0.5)
    assert (inst.y0, inst.x0, inst.mask.shape, inst.area) == (102, 205, (2, 3), 6)
    assert crop_to_content(np.zeros((3, 3), bool)) is None
