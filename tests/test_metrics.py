"""Tests for sac.metrics: hand-computed small cases, empty-image conventions, naive references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import sac.metrics.objects as objects_mod
from sac.metrics import (
    COUNT_KEYS,
    DSB_THRESHOLDS,
    SCORE_KEYS,
    MetricsInputError,
    aggregate,
    aggregate_pixel,
    aji,
    dsb_score,
    evaluate_pair,
    match_instances,
    object_f1,
    panoptic_quality,
    pixel_scores,
)


def paint(img: np.ndarray, rows: slice, cols: slice, label: int) -> np.ndarray:
    img[rows, cols] = label
    return img


def naive_iou(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Reference IoU matrix with an explicit double loop over label pairs."""
    g_labels = [v for v in np.unique(gt) if v != 0]
    p_labels = [v for v in np.unique(pred) if v != 0]
    out = np.zeros((len(g_labels), len(p_labels)))
    for i, a in enumerate(g_labels):
        for j, b in enumerate(p_labels):
            inter = np.count_nonzero((gt == a) & (pred == b))
            union = np.count_nonzero((gt == a) | (pred == b))
            out[i, j] = inter / union
    return out


def random_labels(rng: np.random.Generator, n: int = 6, block: int = 3) -> np.ndarray:
    """Blocky random label image with non-consecutive ids (0 = background)."""
    coarse = rng.integers(0, n, size=(6, 7))
    ids = np.concatenate([[0], rng.choice(np.arange(1, 10_000), size=n - 1, replace=False)])
    return np.kron(ids[coarse], np.ones((block, block), dtype=np.int64)).astype(np.int64)


# --- two 4x4 squares, each predicted with a known shift --------------------------------------
# GT:   A = rows 0-3, cols 0-3 (label 1);  B = rows 0-3, cols 8-11 (label 2).  32 fg pixels.
# Pred: 1 = A shifted right by 1 (cols 1-4): inter 12, union 20 -> IoU 0.6
#       2 = B shifted down by 2 (rows 2-5):  inter 8,  union 24 -> IoU 1/3
def two_squares() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((8, 12), dtype=np.uint16)
    paint(gt, slice(0, 4), slice(0, 4), 1)
    paint(gt, slice(0, 4), slice(8, 12), 2)
    pred = np.zeros((8, 12), dtype=np.uint16)
    paint(pred, slice(0, 4), slice(1, 5), 1)
    paint(pred, slice(2, 6), slice(8, 12), 2)
    return gt, pred


def test_two_squares_known_overlaps() -> None:
    gt, pred = two_squares()
    np.testing.assert_allclose(match_instances(gt, pred), [[0.6, 0.0], [0.0, 1 / 3]])
    # Pixels: TP = 12 + 8 = 20, FP = 32 - 20 = 12, FN = 12.
    px = pixel_scores(gt, pred)
    assert (px["tp"], px["fp"], px["fn"]) == (20, 12, 12)
    assert px["dice"] == pytest.approx(40 / 64)  # 2*20 / (40 + 24)
    assert px["f1"] == px["dice"]
    assert px["iou"] == pytest.approx(20 / 44)
    # IoU > 0.5: only square A matches -> TP 1, FP 1, FN 1; P = R = F1 = 0.5.
    det = object_f1(gt, pred)
    assert (det["tp"], det["fp"], det["fn"]) == (1, 1, 1)
    assert det["precision"] == det["recall"] == det["f1"] == pytest.approx(0.5)
    # IoU > 0.3: both match -> perfect detection.
    assert object_f1(gt, pred, thresh=0.3)["f1"] == 1.0
    # AJI = (12 + 8) / (20 + 24) = 5/11.
    assert aji(gt, pred) == pytest.approx(5 / 11)
    # PQ: DQ = 1 / (1 + 0.5 + 0.5) = 0.5, SQ = 0.6, PQ = 0.3.
    pq = panoptic_quality(gt, pred)
    assert (pq["dq"], pq["sq"], pq["pq"]) == pytest.approx((0.5, 0.6, 0.3))
    # DSB: t = 0.50, 0.55 -> 1 / (1 + 1 + 1) = 1/3; the 8 higher t -> 0.  Mean = (2/3) / 10.
    assert dsb_score(gt, pred) == pytest.approx(1 / 15)


def test_merged_prediction_is_penalised_by_aji() -> None:
    # GT: two 4x4 squares (cols 0-3 and 6-9); pred: one 4x10 box (40 px) covering both.
    gt = np.zeros((4, 10), dtype=np.int32)
    paint(gt, slice(None), slice(0, 4), 1)
    paint(gt, slice(None), slice(6, 10), 2)
    pred = np.full((4, 10), 7, dtype=np.int32)
    # IoU of each square with the box = 16 / 40 = 0.4.
    np.testing.assert_allclose(match_instances(gt, pred), [[0.4], [0.4]])
    # Both GT pick the box: AJI = (16 + 16) / (40 + 40) = 0.4 (box pixels counted twice).
    assert aji(gt, pred) == pytest.approx(0.4)
    # Pixel level hides the merge: TP 32, FP 8, FN 0 -> Dice 64/72, IoU 32/40.
    px = pixel_scores(gt, pred)
    assert px["dice"] == pytest.approx(8 / 9)
    assert px["iou"] == pytest.approx(0.8)
    # No match at IoU > 0.5: TP 0, FP 1, FN 2.
    det = object_f1(gt, pred)
    assert (det["tp"], det["fp"], det["fn"], det["f1"]) == (0, 1, 2, 0.0)
    assert panoptic_quality(gt, pred)["pq"] == 0.0
    assert dsb_score(gt, pred) == 0.0
    # IoU > 0.3: the box matches one square only (one-to-one): P = 1, R = 0.5, F1 = 2/3.
    det = object_f1(gt, pred, thresh=0.3)
    assert (det["tp"], det["fp"], det["fn"]) == (1, 0, 1)
    assert det["f1"] == pytest.approx(2 / 3)


def test_iou_exactly_half_does_not_match() -> None:
    # Two adjacent 4x4 squares merged into one 4x8 box: each IoU is exactly 16/32 = 0.5.
    gt = np.zeros((4, 8), dtype=np.uint8)
    paint(gt, slice(None), slice(0, 4), 1)
    paint(gt, slice(None), slice(4, 8), 2)
    pred = np.ones((4, 8), dtype=np.uint8)
    assert object_f1(gt, pred, thresh=0.5)["tp"] == 0  # strict: 0.5 is not > 0.5
    assert object_f1(gt, pred, thresh=0.49)["tp"] == 1
    assert aji(gt, pred) == pytest.approx(0.5)  # (16 + 16) / (32 + 32)


def test_split_prediction() -> None:
    # GT: one 4x8 box (32 px, label 3). Pred: cols 0-4 (20 px, label 10), cols 5-7 (12 px, 4).
    gt = np.full((4, 8), 3, dtype=np.int64)
    pred = np.zeros((4, 8), dtype=np.int64)
    paint(pred, slice(None), slice(0, 5), 10)
    paint(pred, slice(None), slice(5, 8), 4)
    # Columns follow ascending labels (4, 10): IoU 12/32 and 20/32.
    np.testing.assert_allclose(match_instances(gt, pred), [[0.375, 0.625]])
    assert pixel_scores(gt, pred)["dice"] == 1.0
    # AJI: GT picks label 10: C = 20, U = 32; unused label 4 adds 12 -> 20 / 44.
    assert aji(gt, pred) == pytest.approx(5 / 11)
    # IoU > 0.5: TP 1 (0.625), FP 1, FN 0 -> P 0.5, R 1, F1 2/3.
    det = object_f1(gt, pred)
    assert (det["tp"], det["fp"], det["fn"]) == (1, 1, 0)
    assert (det["precision"], det["recall"]) == (0.5, 1.0)
    assert det["f1"] == pytest.approx(2 / 3)
    # PQ: DQ = 1 / (1 + 0.5) = 2/3, SQ = 0.625, PQ = 5/12.
    pq = panoptic_quality(gt, pred)
    assert (pq["dq"], pq["sq"], pq["pq"]) == pytest.approx((2 / 3, 0.625, 5 / 12))
    # DSB: 0.625 > t for t = 0.50, 0.55, 0.60 -> 1/2 each; 0 for the other 7 -> 1.5/10.
    assert dsb_score(gt, pred) == pytest.approx(0.15)


def test_aji_tie_goes_to_smallest_pred_label() -> None:
    # GT box split into two equal halves (IoU 0.5 each); GT picks label 5, label 9 is unused.
    gt = np.ones((4, 8), dtype=np.uint8)
    pred = np.zeros((4, 8), dtype=np.uint8)
    paint(pred, slice(None), slice(0, 4), 9)
    paint(pred, slice(None), slice(4, 8), 5)
    assert aji(gt, pred) == pytest.approx(16 / (32 + 16))


@pytest.mark.parametrize(
    ("size", "shift", "iou"),
    [
        (4, 1, 12 / 20),  # inter 4*3 = 12, union 16 + 16 - 12 = 20 -> 0.6
        (10, 1, 90 / 110),  # inter 10*9 = 90, union 200 - 90 = 110 -> 0.818
        (4, 2, 8 / 24),  # inter 4*2 = 8, union 32 - 8 = 24 -> 0.333
    ],
)
def test_shifted_square(size: int, shift: int, iou: float) -> None:
    gt = np.zeros((16, 16), dtype=np.uint16)
    pred = np.zeros_like(gt)
    paint(gt, slice(2, 2 + size), slice(2, 2 + size), 1)
    paint(pred, slice(2, 2 + size), slice(2 + shift, 2 + size + shift), 1)
    assert match_instances(gt, pred)[0, 0] == pytest.approx(iou)
    assert aji(gt, pred) == pytest.approx(iou)  # one pair: AJI is its IoU
    # One object each: per threshold the score is 1 if IoU > t else 0, so the DSB score is
    # the fraction of thresholds the IoU exceeds: 0.6 -> 2/10 (0.6 itself is not > 0.6),
    # 0.818 -> 7/10 (0.50 ... 0.80), 0.333 -> 0.
    expected = {12 / 20: 0.2, 90 / 110: 0.7, 8 / 24: 0.0}[iou]
    assert dsb_score(gt, pred) == pytest.approx(expected)
    assert expected == np.mean([iou > t for t in DSB_THRESHOLDS])
    pq = panoptic_quality(gt, pred)
    assert pq["pq"] == pytest.approx(iou if iou > 0.5 else 0.0)


def test_perfect_prediction_scores_one_everywhere() -> None:
    gt = random_labels(np.random.default_rng(0))
    # Same objects under different, non-consecutive ids and another dtype.
    ids = np.unique(gt)
    new_ids = np.concatenate([[0], np.arange(1, ids.size) * 1000 + 7]).astype(np.uint32)
    pred = new_ids[np.searchsorted(ids, gt)]
    res = evaluate_pair(gt, pred)
    for key in SCORE_KEYS:
        assert res[key] == pytest.approx(1.0), key
    assert res["n_gt"] == res["n_pred"] == res["obj_tp"] == ids.size - 1


def test_non_consecutive_labels_and_dtypes() -> None:
    gt, pred = two_squares()
    gt_big = np.select([gt == 1, gt == 2], [4_000_000_000, 17], 0).astype(np.uint32)
    pred_big = np.select([pred == 1, pred == 2], [2**40, 3], 0).astype(np.int64)
    # Rows: gt labels (17, 4e9) = (B, A); columns: pred labels (3, 2**40) = (pred 2, pred 1).
    np.testing.assert_allclose(match_instances(gt_big, pred_big), [[1 / 3, 0.0], [0.0, 0.6]])
    assert evaluate_pair(gt_big, pred_big) == evaluate_pair(gt, pred)
    u64 = gt_big.astype(np.uint64) + np.uint64(2**63) * (gt_big > 0)
    assert evaluate_pair(u64, pred_big) == evaluate_pair(gt, pred)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("force_sparse", [False, True])
def test_iou_matrix_matches_naive_loop(
    seed: int, force_sparse: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if force_sparse:  # take the np.unique branch instead of the dense bincount
        monkeypatch.setattr(objects_mod, "_DENSE_PAIRS_FACTOR", 0)
        monkeypatch.setattr(objects_mod, "_DENSE_PAIRS_MIN", 0)
    rng = np.random.default_rng(seed)
    gt = random_labels(rng, n=rng.integers(2, 9))
    pred = random_labels(rng, n=rng.integers(2, 9))
    if seed % 2:  # huge ids take the sort-based relabelling path
        pred = np.where(pred > 0, pred.astype(np.uint64) + np.uint64(10**15), 0)
    np.testing.assert_allclose(match_instances(gt, pred), naive_iou(gt, pred))


def naive_aji(gt: np.ndarray, pred: np.ndarray) -> float:
    """Reference AJI following Kumar et al. step by step, one GT object at a time."""
    g_labels = [v for v in np.unique(gt) if v != 0]
    p_labels = [v for v in np.unique(pred) if v != 0]
    if not g_labels and not p_labels:
        return 1.0
    inter_sum, union_sum, used = 0, 0, set()
    for a in g_labels:
        g = gt == a
        ious = [np.count_nonzero(g & (pred == b)) / np.count_nonzero(g | (pred == b))
                for b in p_labels]
        if not ious or max(ious) == 0:
            union_sum += np.count_nonzero(g)
            continue
        b = p_labels[int(np.argmax(ious))]
        used.add(b)
        inter_sum += np.count_nonzero(g & (pred == b))
        union_sum += np.count_nonzero(g | (pred == b))
    union_sum += sum(np.count_nonzero(pred == b) for b in p_labels if b not in used)
    return inter_sum / union_sum


@pytest.mark.parametrize("seed", range(6))
def test_aji_and_pq_match_naive_references(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    gt = random_labels(rng, n=7)
    pred = random_labels(rng, n=7)
    pred[rng.random(pred.shape) < 0.1] = 0  # ragged objects, partial overlaps
    assert aji(gt, pred) == pytest.approx(naive_aji(gt, pred))
    iou = naive_iou(gt, pred)
    matched = iou[iou > 0.5]
    tp, fp, fn = matched.size, iou.shape[1] - matched.size, iou.shape[0] - matched.size
    pq = panoptic_quality(gt, pred)
    dq = tp / (tp + fp / 2 + fn / 2)
    sq = matched.mean() if tp else 0.0
    assert (pq["dq"], pq["sq"], pq["pq"]) == pytest.approx((dq, sq, dq * sq))
    # Kaggle DSB: TP(t) / (TP + FP + FN) with FP + FN = n_gt + n_pred - 2 TP.
    per_t = [(iou > t).sum() / (sum(iou.shape) - (iou > t).sum()) for t in DSB_THRESHOLDS]
    assert dsb_score(gt, pred) == pytest.approx(np.mean(per_t))


def brute_force_matches(iou: np.ndarray, thresh: float) -> int:
    """Largest one-to-one matching among pairs with IoU > thresh, by trying every permutation."""
    m = max(iou.shape)
    ok = np.zeros((m, m), dtype=bool)
    ok[: iou.shape[0], : iou.shape[1]] = iou > thresh
    return max(int(ok[np.arange(m), list(p)].sum()) for p in itertools.permutations(range(m)))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("thresh", [0.0, 0.1, 0.3, 0.5, 0.7])
def test_object_matching_is_maximal_and_one_to_one(seed: int, thresh: float) -> None:
    rng = np.random.default_rng(100 + seed)
    gt = random_labels(rng, n=5, block=2)
    pred = random_labels(rng, n=5, block=2)
    iou = naive_iou(gt, pred)
    det = object_f1(gt, pred, thresh=thresh)
    assert det["tp"] == brute_force_matches(iou, thresh)
    assert det["tp"] + det["fn"] == iou.shape[0]
    assert det["tp"] + det["fp"] == iou.shape[1]
    if thresh >= 0.5:  # uniqueness: each object has at most one partner above threshold
        above = iou > thresh
        assert above.sum(axis=0).max(initial=0) <= 1
        assert above.sum(axis=1).max(initial=0) <= 1


def test_assignment_beats_greedy_below_half() -> None:
    # 2-row strips. GT g1 = cols 0-9, g2 = cols 10-19. Pred p1 = cols 3-12, p2 = cols 0-2.
    # IoU(g1,p1) = 7/13, IoU(g1,p2) = 3/10, IoU(g2,p1) = 3/17 ~ 0.18.
    # Greedy (best pair first) takes g1-p1 and strands g2 and p2; the optimum is g1-p2, g2-p1.
    gt = np.zeros((2, 20), dtype=np.uint8)
    paint(gt, slice(None), slice(0, 10), 1)
    paint(gt, slice(None), slice(10, 20), 2)
    pred = np.zeros_like(gt)
    paint(pred, slice(None), slice(3, 13), 1)
    paint(pred, slice(None), slice(0, 3), 2)
    np.testing.assert_allclose(match_instances(gt, pred), [[7 / 13, 3 / 10], [3 / 17, 0.0]])
    assert object_f1(gt, pred, thresh=0.1)["f1"] == 1.0
    assert object_f1(gt, pred, thresh=0.5)["tp"] == 1
    # Assignment maximises the count first: SQ at IoU > 0.1 is (3/10 + 3/17) / 2.
    assert panoptic_quality(gt, pred, thresh=0.1)["sq"] == pytest.approx((3 / 10 + 3 / 17) / 2)


def empty_and_full() -> tuple[np.ndarray, np.ndarray]:
    empty = np.zeros((6, 6), dtype=np.uint16)
    full = np.zeros((6, 6), dtype=np.uint16)
    paint(full, slice(1, 3), slice(1, 3), 5)
    paint(full, slice(3, 6), slice(3, 6), 9)
    return empty, full


def test_both_empty_scores_one() -> None:
    empty, _ = empty_and_full()
    res = evaluate_pair(empty, empty)
    assert all(res[k] == 1.0 for k in SCORE_KEYS)
    assert all(res[k] == 0 for k in COUNT_KEYS)
    assert pixel_scores(empty, empty)["dice"] == 1.0
    det = object_f1(empty, empty, thresh=0.2)
    assert (det["precision"], det["recall"], det["f1"]) == (1.0, 1.0, 1.0)
    pq = panoptic_quality(empty, empty)
    assert (pq["dq"], pq["sq"], pq["pq"]) == (1.0, 1.0, 1.0)
    assert match_instances(empty, empty).shape == (0, 0)


@pytest.mark.parametrize("which", ["empty_pred", "empty_gt"])
def test_one_side_empty_scores_zero(which: str) -> None:
    empty, full = empty_and_full()
    gt, pred = (full, empty) if which == "empty_pred" else (empty, full)
    res = evaluate_pair(gt, pred)
    assert all(res[k] == 0.0 for k in SCORE_KEYS), res
    assert (res["n_gt"], res["n_pred"]) == ((2, 0) if which == "empty_pred" else (0, 2))
    assert (res["obj_fn"], res["obj_fp"]) == (res["n_gt"], res["n_pred"])
    assert match_instances(gt, pred).shape == (res["n_gt"], res["n_pred"])
    det = object_f1(gt, pred, thresh=0.2)
    assert (det["precision"], det["recall"], det["f1"]) == (0.0, 0.0, 0.0)


def test_aggregate_pixel_dataset_level_vs_mean() -> None:
    # Image 1: perfect 4x4 square -> TP 16, FP 0, FN 0, Dice 1, IoU 1.
    # Image 2: 2x2 GT and a disjoint 2x2 prediction -> TP 0, FP 4, FN 4, Dice 0, IoU 0.
    gt1 = paint(np.zeros((8, 8), np.uint8), slice(0, 4), slice(0, 4), 1)
    gt2 = paint(np.zeros((8, 8), np.uint8), slice(0, 2), slice(0, 2), 1)
    pred2 = paint(np.zeros((8, 8), np.uint8), slice(5, 7), slice(5, 7), 1)
    agg = aggregate_pixel([pixel_scores(gt1, gt1), pixel_scores(gt2, pred2)])
    assert agg["pixel_dice"] == agg["pixel_f1"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert agg["pixel_iou"] == pytest.approx(0.5)
    # Summed: TP 16, FP 4, FN 4 -> Dice 32/40 = 0.8, IoU 16/24 = 2/3.
    assert agg["pixel_dice_sum"] == agg["pixel_f1_sum"] == pytest.approx(0.8)
    assert agg["pixel_iou_sum"] == pytest.approx(2 / 3)
    assert (agg["pixel_tp"], agg["pixel_fp"], agg["pixel_fn"], agg["n_images"]) == (16, 4, 4, 2)

    # aggregate() over evaluate_pair results reports the same pixel numbers.
    full = aggregate([evaluate_pair(gt1, gt1), evaluate_pair(gt2, pred2)])
    for key in ("pixel_dice", "pixel_iou", "pixel_dice_sum", "pixel_iou_sum", "pixel_tp"):
        assert full[key] == pytest.approx(agg[key])
    # Object scores are per-image means: image 1 perfect, image 2 all zero.
    for key in ("f1_obj", "aji", "pq", "dsb_score"):
        assert full[key] == pytest.approx(0.5)
    assert (full["obj_tp"], full["obj_fp"], full["obj_fn"], full["n_images"]) == (1, 1, 1, 2)


def test_evaluate_pair_agrees_with_single_metrics() -> None:
    gt, pred = two_squares()
    res = evaluate_pair(gt, pred)
    assert set(res) == set(SCORE_KEYS) | set(COUNT_KEYS)
    assert res["pixel_dice"] == pixel_scores(gt, pred)["dice"]
    assert res["f1_obj"] == object_f1(gt, pred)["f1"]
    assert res["aji"] == aji(gt, pred)
    assert res["pq"] == panoptic_quality(gt, pred)["pq"]
    assert res["dsb_score"] == dsb_score(gt, pred)


@pytest.mark.parametrize(
    ("gt", "pred", "match"),
    [
        (np.zeros((4, 4), int), np.zeros((4, 5), int), "same shape"),
        (np.zeros((4, 4), float), np.zeros((4, 4), int), "integer"),
        (np.zeros((4, 4), bool), np.zeros((4, 4), int), "astype"),
        (np.zeros((4, 4, 1), int), np.zeros((4, 4, 1), int), "2-D"),
        (np.zeros((4, 4), int), np.full((4, 4), -1), ">= 0"),
    ],
)
def test_invalid_inputs_raise_value_error(gt: np.ndarray, pred: np.ndarray, match: str) -> None:
    for fn in (pixel_scores, match_instances, object_f1, aji, panoptic_quality, dsb_score,
               evaluate_pair):
        with pytest.raises(ValueError, match=match):
            fn(gt, pred)


def test_bad_threshold_and_bad_aggregate_input() -> None:
    gt, pred = two_squares()
    with pytest.raises(ValueError, match="threshold"):
        object_f1(gt, pred, thresh=1.5)
    with pytest.raises(ValueError, match="no per-image"):
        aggregate([])
    with pytest.raises(ValueError, match="lack keys"):
        aggregate([{"pixel_dice": 1.0}])
    with pytest.raises(ValueError, match="tp"):
        aggregate_pixel([{"dice": 1.0}])
    assert isinstance(MetricsInputError("x"), ValueError)


def test_aggregate_groups_weigh_each_group_the_same() -> None:
    # group "a": one perfect image; group "b": two images with nothing found
    gt1 = paint(np.zeros((8, 8), np.uint8), slice(0, 4), slice(0, 4), 1)
    empty = np.zeros((8, 8), np.uint8)
    rows = [evaluate_pair(gt1, gt1), evaluate_pair(gt1, empty), evaluate_pair(gt1, empty)]
    plain = aggregate(rows)
    grouped = aggregate(rows, ["a", "b", "b"])
    for key in ("pixel_dice", "f1_obj", "aji", "pq", "dsb_score"):
        assert plain[key] == pytest.approx(1 / 3)  # every image weighs the same
        assert grouped[key] == pytest.approx(0.5)  # every group weighs the same
    for key in ("obj_tp", "obj_fn", "pixel_tp", "pixel_fn", "n_images", "pixel_dice_sum"):
        assert grouped[key] == plain[key]  # counts and summed scores are over all images
    assert aggregate(rows, ["a", "a", "a"]) == plain  # one group: the plain mean
    with pytest.raises(ValueError, match="one group name per result"):
        aggregate(rows, ["a", "b"])
