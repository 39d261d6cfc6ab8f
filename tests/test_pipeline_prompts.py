"""Prompts from probability maps and instance labels: points, negatives, sets, detection."""

from __future__ import annotations

import numpy as np
import pytest

from sac.pipeline.nuclei import detect_nuclei
from sac.pipeline.prompts import (
    PromptSet,
    background_points,
    batch_prompt_sets,
    centroid_points,
    ground_truth_prompts,
    instance_prompts,
    instance_table,
    nearest_neighbours,
    probability_points,
    semantic_prompts,
)
from sac.training.targets import generator_targets

from synthetic import disk_labels as disks

DISKS = [(20, 20, 8), (20, 60, 10), (60, 30, 9), (62, 70, 7)]  # (cy, cx, r), well apart




def c_shape(shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    """A C-shaped nucleus (a thick ring open to the right), whose centroid lies outside it."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d2 = (yy - 32) ** 2 + (xx - 32) ** 2
    return ((d2 <= 400) & (d2 >= 144) & ~((xx > 32) & (abs(yy - 32) < 6))).astype(np.uint32)


def test_centroid_points_are_disk_centres() -> None:
    labels = disks((90, 90), DISKS)
    pts = centroid_points(labels)
    assert pts.shape == (4, 2) and pts.dtype == np.float32
    expected = np.array([(cx, cy) for cy, cx, _ in DISKS], np.float32)
    np.testing.assert_allclose(pts, expected, atol=1.0)


def test_centroid_point_inside_concave_nucleus() -> None:
    labels = c_shape()
    table = instance_table(labels)
    cy, cx = table.centroids[0]
    assert labels[round(cy), round(cx)] == 0  # the plain centroid would miss the nucleus
    (x, y), = centroid_points(labels)
    assert labels[int(y), int(x)] == 1


def test_instance_table_handles_sparse_ids() -> None:
    labels = disks((90, 90), DISKS).astype(np.int64)
    labels[labels == 4] = 10**12
    table = instance_table(labels)
    assert table.ids.tolist() == [1, 2, 3, 10**12]
    assert table.seq.max() == 4 and (table.seq > 0).sum() == (labels > 0).sum()


def test_probability_points_spacing_and_order() -> None:
    rng = np.random.default_rng(3)
    prob = rng.random((80, 80)).astype(np.float32)
    pts = probability_points(prob, n_max=30, min_distance=6.0, thresh=0.5)
    assert 0 < len(pts) <= 30
    values = prob[pts[:, 1].astype(int), pts[:, 0].astype(int)]
    assert (values >= 0.5).all() and (np.diff(values) <= 0).all()
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(len(pts)) * 1e9
    assert d.min() >= 6.0
    assert values[0] == prob.max()  # the global maximum comes first


def test_probability_points_one_per_blob() -> None:
    labels = disks((90, 90), DISKS)
    heat = generator_targets(labels)[2]
    pts = probability_points(heat, n_max=10, min_distance=5, thresh=0.5)
    expected = {(cx, cy) for cy, cx, _ in DISKS}
    assert {(int(x), int(y)) for x, y in pts} == expected


def test_background_points_never_on_foreground() -> None:
    labels = disks((90, 90), DISKS)
    prob = np.where(labels > 0, 0.95, 0.02).astype(np.float32)
    prob[80:, 80:] = 0.3  # uncertain: neither foreground nor confident background
    near_fg = np.zeros_like(prob, bool)
    ys, xs = np.nonzero(prob >= 0.5)
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            near_fg[np.clip(ys + dy, 0, 89), np.clip(xs + dx, 0, 89)] = True
    for seed in range(50):
        pts = background_points(prob, 12, 8.0, rng=np.random.default_rng(seed))
        assert len(pts) == 12
        r, c = pts[:, 1].astype(int), pts[:, 0].astype(int)
        assert (prob[r, c] < 0.1).all() and not near_fg[r, c].any()
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(12) * 1e9
        assert d.min() >= 8.0
    a = background_points(prob, 5, 8.0, rng=np.random.default_rng(7))
    b = background_points(prob, 5, 8.0, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    full = np.ones((20, 20), np.float32)
    assert background_points(full, 5, 3.0, rng=np.random.default_rng(0)).shape == (0, 2)


def test_nearest_neighbours() -> None:
    centres = np.array([[0, 0], [3, 0], [0, 5], [100, 100]], np.float32)
    nb = nearest_neighbours(centres, k=2, radius=10)
    assert nb.tolist() == [[1, 2], [0, 2], [0, 1], [-1, -1]]
    assert nearest_neighbours(centres, k=1)[3].tolist() == [2]  # (0, 5) is nearer than (3, 0)


def test_instance_prompts_structure() -> None:
    spec = [(30, 30, 10), (30, 50, 10), (30, 70, 10), (80, 80, 8)]  # three in a row touching
    labels = disks((100, 100), spec)
    sets = instance_prompts(labels, n_neg_neighbours=2, neighbour_radius=30.0)
    assert [s.instance for s in sets] == [1, 2, 3, 4]
    centres = centroid_points(labels)
    middle = sets[1]
    assert middle.labels.tolist() == [1, 0, 0] and middle.labels.dtype == np.int64
    np.testing.assert_allclose(middle.points[0], centres[1])
    np.testing.assert_allclose(sorted(middle.points[1:, 0]), [centres[0, 0], centres[2, 0]])
    assert sets[0].labels.tolist() == [1, 0]  # the far one in the row is 40 px away
    np.testing.assert_allclose(sets[0].points[1], centres[1])
    wide = instance_prompts(labels, n_neg_neighbours=2, neighbour_radius=45.0)
    np.testing.assert_allclose(wide[0].points[1:], centres[1:3])  # nearest first
    assert sets[3].labels.tolist() == [1]  # no neighbour within 30 px
    for s in sets:  # boxes enclose their nucleus, grown by the pad
        ys, xs = np.nonzero(labels == s.instance)
        x0, y0, x1, y1 = s.box
        assert x0 <= xs.min() - 3 + 1e-6 and y0 <= ys.min() - 3 + 1e-6
        assert x1 >= xs.max() + 3 - 1e-6 and y1 >= ys.max() + 3 - 1e-6
        assert x0 >= 0 and y0 >= 0 and x1 <= 99 and y1 <= 99
    box_only = instance_prompts(labels, use_points=False)
    assert all(len(s.points) == 0 and s.box is not None for s in box_only)
    with pytest.raises(ValueError, match="both be False"):
        instance_prompts(labels, use_points=False, use_boxes=False)


def test_instance_prompts_background_negatives() -> None:
    labels = disks((90, 90), DISKS)
    sets = instance_prompts(labels, n_neg_neighbours=1, n_neg_background=3, use_boxes=False,
                            neighbour_radius=100.0, rng=np.random.default_rng(0))
    for s in sets:
        assert s.box is None and s.labels.tolist() == [1, 0, 0, 0, 0]
        bg = s.points[2:].astype(int)
        assert (labels[bg[:, 1], bg[:, 0]] == 0).all()


def test_batch_padding() -> None:
    a = PromptSet(np.ones((3, 2), np.float32), np.array([1, 0, 0]), np.zeros(4, np.float32), 1)
    b = PromptSet(np.ones((1, 2), np.float32), np.array([1]), np.ones(4, np.float32), 2)
    pts, lbl, boxes = batch_prompt_sets([a, b])
    assert pts.shape == (2, 3, 2) and lbl.shape == (2, 3) and boxes.shape == (2, 4)
    assert lbl.tolist() == [[1, 0, 0], [1, -1, -1]] and lbl.dtype == np.int64
    assert (pts[1, 1:] == 0).all()
    no_box = PromptSet(b.points, b.labels)
    assert batch_prompt_sets([no_box])[2] is None
    with pytest.raises(ValueError, match="box"):
        batch_prompt_sets([a, no_box])


def test_semantic_prompts_cap() -> None:
    pos = np.arange(20, dtype=np.float32).reshape(10, 2)
    neg = -np.arange(10, dtype=np.float32).reshape(5, 2)
    full = semantic_prompts(pos, neg, max_points=100)
    assert len(full.points) == 15 and full.labels.sum() == 10 and full.instance == 0
    capped = semantic_prompts(pos, neg, max_points=6)
    assert len(capped.points) == 6 and capped.labels.tolist() == [1, 1, 1, 1, 0, 0]
    np.testing.assert_array_equal(capped.points[:4], pos[:4])
    rand = semantic_prompts(pos, neg, max_points=6, rng=np.random.default_rng(0))
    assert len(rand.points) == 6 and rand.labels.sum() == 4
    assert semantic_prompts(pos, neg, max_points=1).labels.tolist() == [1]


def test_ground_truth_prompts() -> None:
    labels = disks((90, 90), DISKS)
    centres = centroid_points(labels)
    for seed in range(5):
        sets = ground_truth_prompts(labels, np.random.default_rng(seed), n_neg_neighbours=1,
                                    neighbour_radius=100.0, box_jitter=0.05)
        assert [s.instance for s in sets] == [1, 2, 3, 4]
        for i, s in enumerate(sets):
            x, y = s.points[0]
            assert labels[int(y), int(x)] == s.instance
            assert np.hypot(x - centres[i, 0], y - centres[i, 1]) <= 0.3 * DISKS[i][2] + 1
            assert s.labels.tolist() == [1, 0]
            assert s.box[0] <= s.box[2] and s.box[1] <= s.box[3]
    a = ground_truth_prompts(labels, np.random.default_rng(1))
    b = ground_truth_prompts(labels, np.random.default_rng(1))
    assert all((p.points == q.points).all() for p, q in zip(a, b, strict=True))


def test_detect_nuclei_splits_touching_disks() -> None:
    labels = disks((64, 80), [(32, 25, 12), (32, 47, 12)])
    t = generator_targets(labels)
    fg = t[0] * 0.9 + 0.05
    out = detect_nuclei(fg, t[2])
    assert out.dtype == np.uint32 and out.max() == 2
    for cy, cx in [(32, 25), (32, 47)]:
        region = out == out[cy, cx]
        assert out[cy, cx] > 0 and (labels[region] == labels[cy, cx]).mean() > 0.9
    assert out[32, 25] != out[32, 47]
    with_boundary = detect_nuclei(fg, t[2], boundary=t[1])
    assert with_boundary.max() == 2
    agree = (with_boundary > 0) & (labels > 0)
    assert (with_boundary[agree] == labels[agree]).mean() > 0.95


def test_detect_nuclei_small_and_unseeded() -> None:
    fg = np.zeros((40, 40), np.float32)
    fg[5:15, 5:15] = 1.0  # no centre peak at all: still found
    fg[30:32, 30:32] = 1.0  # 4 px: dropped
    out = detect_nuclei(fg, np.zeros_like(fg), min_area=8)
    assert out.max() == 1 and (out > 0).sum() == 100
    assert detect_nuclei(np.zeros((8, 8)), np.zeros((8, 8))).max() == 0
