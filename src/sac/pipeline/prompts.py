"""Prompts for SAM from the prompt generator's maps or from ground-truth instances (numpy only).

Prompt sets for detected nuclei are built by :mod:`sac.pipeline.prompt_sets` from the
primitives here (detections come from :mod:`sac.pipeline.nuclei`), which follow the SAC
paper's prompt strategies. Positive points sit at nucleus centroids
(:func:`centroid_points`) or the most probable pixels (:func:`probability_points`);
negatives on confident background (:func:`background_points`) and, for one nucleus, at its
nearest neighbours' centres (:func:`nearest_neighbours`), which teaches SAM to tell a nucleus
from the one touching it. Prompts come one :class:`PromptSet` per nucleus
(:func:`instance_prompts`, :func:`ground_truth_prompts`) or one per tile
(:func:`semantic_prompts`), and :func:`batch_prompt_sets` pads them into batches.

Points are ``(x, y)`` pixel coordinates (column, row); boxes are ``x0, y0, x1, y1`` with the
last row and column included, as in :mod:`sac.pipeline.classical`. Instances are always listed in
increasing label id. Randomness comes only from an explicit ``np.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from sac.core.labels import innermost_pixel


@dataclass
class PromptSet:
    """The prompts of one SAM decode: points with labels (1 positive, 0 negative), an optional
    box, and the label id of the nucleus they are for (0 for a semantic, whole-tile set)."""

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None = None
    instance: int = 0


@dataclass
class InstanceTable:
    """Per-instance statistics of a label image, instances in increasing label id."""

    ids: np.ndarray  # (N,) label ids
    seq: np.ndarray  # labels renumbered 1..N (0 background)
    areas: np.ndarray  # (N,) pixel counts
    centroids: np.ndarray  # (N, 2) float (y, x)
    slices: list[tuple[slice, slice]]  # bounding boxes, row and column slices

    def __len__(self) -> int:
        return len(self.ids)


def _renumber(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nonzero label ids in increasing order, and labels renumbered to 1..N as int32."""
    flat = labels.ravel()
    lo, hi = (int(flat.min()), int(flat.max())) if flat.size else (0, 0)
    if np.can_cast(labels.dtype, np.intp) and lo >= 0 and hi < 4 * flat.size + 1024:
        ids = np.flatnonzero(np.bincount(flat, minlength=1)[1:]) + 1  # fast path, small ids
        lut = np.zeros(hi + 1, np.int32)
        lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
        return ids.astype(labels.dtype), lut[labels]
    ids, inv = np.unique(labels, return_inverse=True)
    seq = inv.reshape(labels.shape).astype(np.int32)
    if ids.size and ids[0] == 0:
        return ids[1:], seq
    return ids, seq + 1


def instance_table(labels: np.ndarray) -> InstanceTable:
    """Ids, areas, centroids and bounding boxes of every instance, computed in one pass."""
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D; got shape {labels.shape}")
    ids, seq = _renumber(labels)
    n = len(ids)
    flat = seq.ravel()
    h, w = labels.shape
    areas = np.bincount(flat, minlength=n + 1)[1:]
    yy = np.repeat(np.arange(h, dtype=np.float64), w)
    xx = np.tile(np.arange(w, dtype=np.float64), h)
    sy = np.bincount(flat, weights=yy, minlength=n + 1)[1:]
    sx = np.bincount(flat, weights=xx, minlength=n + 1)[1:]
    cen = np.stack([sy, sx], axis=1) / np.maximum(areas, 1)[:, None]
    slices = [s for s in ndi.find_objects(seq) if s is not None]
    return InstanceTable(ids, seq, areas, cen, slices)


def centroid_points(labels: np.ndarray, table: InstanceTable | None = None) -> np.ndarray:
    """(N, 2) float32 ``(x, y)``: each nucleus's centroid, or its innermost pixel (the maximum
    of its distance transform) when the centroid falls outside it, as for a C-shaped nucleus."""
    t = table if table is not None else instance_table(labels)
    if len(t) == 0:
        return np.zeros((0, 2), np.float32)
    h, w = t.seq.shape
    ry = np.clip(np.rint(t.centroids[:, 0]).astype(np.int64), 0, h - 1)
    rx = np.clip(np.rint(t.centroids[:, 1]).astype(np.int64), 0, w - 1)
    out = t.centroids[:, ::-1].copy()
    for i in np.flatnonzero(t.seq[ry, rx] != np.arange(1, len(t) + 1)):
        ys, xs = t.slices[i]
        r, c, _ = innermost_pixel(t.seq[ys, xs] == i + 1)
        out[i] = (xs.start + c, ys.start + r)
    return out.astype(np.float32)


def _greedy_spaced(
    rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], n_max: int, min_distance: float
) -> np.ndarray:
    """Indices of candidates taken in the given order, skipping any closer than
    ``min_distance`` to one already taken, until ``n_max`` are taken."""
    if min_distance <= 0:
        return np.arange(min(n_max, len(rows)))
    h, w = shape
    k = int(np.ceil(min_distance))
    dy, dx = np.mgrid[-k : k + 1, -k : k + 1]
    disk = dy**2 + dx**2 < min_distance**2  # offsets closer than min_distance
    dy, dx = dy[disk], dx[disk]
    blocked = np.zeros(shape, bool)
    taken: list[int] = []
    for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        if len(taken) >= n_max:
            break
        if blocked[r, c]:
            continue
        taken.append(i)
        yy, xx = r + dy, c + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        blocked[yy[ok], xx[ok]] = True
    return np.asarray(taken, dtype=np.int64)


def probability_points(
    prob: np.ndarray, n_max: int, min_distance: float, thresh: float = 0.5
) -> np.ndarray:
    """(N <= n_max, 2) float32 ``(x, y)``: the most probable pixels, in order of decreasing
    probability, at least ``min_distance`` px apart (greedy non-maximum suppression over the
    3x3 local maxima at or above ``thresh``; ties in row-major order)."""
    prob = np.asarray(prob, dtype=np.float32)
    cand = (prob >= thresh) & (prob == ndi.maximum_filter(prob, size=3, mode="nearest"))
    rows, cols = np.nonzero(cand)
    order = np.argsort(-prob[rows, cols], kind="stable")
    rows, cols = rows[order], cols[order]
    keep = _greedy_spaced(rows, cols, prob.shape, n_max, min_distance)
    return np.stack([cols[keep], rows[keep]], axis=1).astype(np.float32)


def background_points(
    fg_prob: np.ndarray,
    n: int,
    min_distance: float,
    thresh: float = 0.1,
    *,
    rng: np.random.Generator,
    fg_margin: float = 2.0,
) -> np.ndarray:
    """(<= n, 2) float32 ``(x, y)`` negative points on confident background.

    Candidates have probability below ``thresh`` and lie at least ``fg_margin`` px from every
    pixel with probability >= 0.5. They are drawn in random order (from ``rng``) and kept at
    least ``min_distance`` apart; if spacing leaves fewer than ``n``, the rest are filled with
    other candidates regardless of spacing. Fewer than ``n`` only when candidates run out.
    """
    return _sample_spaced(_background_mask(fg_prob, thresh, fg_margin), n, min_distance, rng)


def _background_mask(fg_prob: np.ndarray, thresh: float, fg_margin: float) -> np.ndarray:
    """Pixels below ``thresh`` and at least ``fg_margin`` px from any pixel >= 0.5."""
    fg_prob = np.asarray(fg_prob, dtype=np.float32)
    fg = fg_prob >= 0.5
    ok = fg_prob < thresh
    if fg.any():
        ok &= ndi.distance_transform_edt(~fg) >= fg_margin
    return ok


def _sample_spaced(
    ok: np.ndarray, n: int, min_distance: float, rng: np.random.Generator
) -> np.ndarray:
    """Up to ``n`` random ``(x, y)`` pixels of ``ok``, spaced when possible (see above)."""
    rows, cols = np.nonzero(ok)
    if n <= 0 or rows.size == 0:
        return np.zeros((0, 2), np.float32)
    perm = rng.permutation(rows.size)
    rows, cols = rows[perm], cols[perm]
    keep = _greedy_spaced(rows, cols, ok.shape, n, min_distance)
    if len(keep) < n:
        rest = np.setdiff1d(np.arange(rows.size), keep, assume_unique=True)
        keep = np.concatenate([keep, rest[: n - len(keep)]])
    return np.stack([cols[keep], rows[keep]], axis=1).astype(np.float32)


def nearest_neighbours(centres: np.ndarray, k: int, radius: float | None = None) -> np.ndarray:
    """(N, k) int64 indices of each centre's ``k`` nearest other centres within ``radius``
    (any distance when ``None``), nearest first; -1 where there are fewer."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    n = len(centres)
    out = np.full((n, max(k, 0)), -1, dtype=np.int64)
    if n < 2 or k <= 0:
        return out
    bound = np.inf if radius is None else float(radius)
    kk = min(k + 1, n)
    dist, idx = cKDTree(centres).query(centres, k=kk, distance_upper_bound=bound)
    dist, idx = dist.reshape(n, kk), idx.reshape(n, kk)
    valid = np.isfinite(dist) & (idx != np.arange(n)[:, None])
    for i in range(n):
        found = idx[i, valid[i]][:k]
        out[i, : len(found)] = found
    return out


def _build_sets(
    table: InstanceTable,
    positives: np.ndarray,
    centres: np.ndarray,
    bg_prob: np.ndarray,
    n_neg_neighbours: int,
    n_neg_background: int,
    use_points: bool,
    use_boxes: bool,
    box_pad: float,
    neighbour_radius: float | None,
    rng: np.random.Generator | None,
    box_jitter: float = 0.0,
) -> list[PromptSet]:
    """One prompt set per instance of ``table``: positive, neighbour and background negatives,
    box. Background negatives are drawn near the nucleus (within twice its box size)."""
    if not (use_points or use_boxes):
        raise ValueError("use_points and use_boxes cannot both be False")
    if (n_neg_background > 0 or box_jitter > 0) and rng is None:
        raise ValueError("background negatives and box jitter need an rng")
    shape = table.seq.shape
    if neighbour_radius is None and len(table):
        neighbour_radius = 4.0 * float(np.median(np.sqrt(table.areas / np.pi)))
    nbrs = nearest_neighbours(centres, n_neg_neighbours, neighbour_radius)
    bg_ok = _background_mask(bg_prob, 0.1, 2.0) if n_neg_background > 0 else None
    sets: list[PromptSet] = []
    for i in range(len(table)):
        pts = np.zeros((0, 2), np.float32)
        lbl = np.zeros(0, np.int64)
        if use_points:
            neg = [centres[nbrs[i][nbrs[i] >= 0]]]
            if bg_ok is not None and rng is not None:
                ys, xs = table.slices[i]
                my, mx = ys.stop - ys.start, xs.stop - xs.start
                y0, x0 = max(ys.start - my, 0), max(xs.start - mx, 0)
                win = bg_ok[y0 : ys.stop + my, x0 : xs.stop + mx]
                bg = _sample_spaced(win, n_neg_background, 0.5 * max(my, mx), rng)
                neg.append(bg + np.array([x0, y0], np.float32))
            negs = np.concatenate(neg, axis=0)
            pts = np.concatenate([positives[i : i + 1], negs]).astype(np.float32)
            lbl = np.concatenate([[1], np.zeros(len(negs), np.int64)]).astype(np.int64)
        box = None
        if use_boxes:
            ys, xs = table.slices[i]
            box = np.array([xs.start - box_pad, ys.start - box_pad, xs.stop - 1 + box_pad,
                            ys.stop - 1 + box_pad], np.float32)
            box = np.clip(box, 0, [shape[1] - 1, shape[0] - 1] * 2).astype(np.float32)
            if box_jitter > 0 and rng is not None:
                size = np.array([box[2] - box[0], box[3] - box[1]] * 2, np.float32) + 1
                box = box + rng.normal(0.0, box_jitter, 4).astype(np.float32) * size
                box = np.clip(box, 0, [shape[1] - 1, shape[0] - 1] * 2).astype(np.float32)
                box = np.concatenate([np.minimum(box[:2], box[2:]), np.maximum(box[:2], box[2:])])
        sets.append(PromptSet(pts, lbl, box, int(table.ids[i])))
    return sets


def instance_prompts(
    labels: np.ndarray,
    centres: np.ndarray | None = None,
    n_neg_neighbours: int = 2,
    n_neg_background: int = 0,
    use_boxes: bool = True,
    use_points: bool = True,
    box_pad: float = 3.0,
    neighbour_radius: float | None = None,
    fg_prob: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> list[PromptSet]:
    """One :class:`PromptSet` per detected nucleus of ``labels``, in increasing label id.

    Points: the nucleus's ``centres`` row (positive; :func:`centroid_points` when ``None``),
    then negatives at the centres of up to ``n_neg_neighbours`` nearest other nuclei within
    ``neighbour_radius`` (default 4 median nucleus radii), then up to ``n_neg_background``
    background negatives near the nucleus, confident per ``fg_prob`` (default ``labels > 0``;
    needs ``rng``). Box: the nucleus's bounding box grown by ``box_pad`` px, clipped.
    """
    table = instance_table(labels)
    if centres is None:
        centres = centroid_points(labels, table)
    centres = np.asarray(centres, np.float32).reshape(-1, 2)
    if len(centres) != len(table):
        raise ValueError(f"{len(centres)} centres for {len(table)} nuclei")
    bg = (labels > 0).astype(np.float32) if fg_prob is None else np.asarray(fg_prob, np.float32)
    return _build_sets(table, centres, centres, bg, n_neg_neighbours, n_neg_background,
                       use_points, use_boxes, box_pad, neighbour_radius, rng)


def ground_truth_prompts(
    gt_labels: np.ndarray,
    rng: np.random.Generator,
    n_neg_neighbours: int = 2,
    n_neg_background: int = 0,
    use_boxes: bool = True,
    use_points: bool = True,
    box_pad: float = 3.0,
    neighbour_radius: float | None = None,
    jitter: float = 0.3,
    box_jitter: float = 0.0,
) -> list[PromptSet]:
    """Training prompts from ground-truth instances, structured as :func:`instance_prompts`.

    The positive point is a random pixel of the nucleus within ``jitter`` equivalent radii of
    its centre (the centre itself if none is); negatives sit at the neighbours' centres and on
    background. ``box_jitter`` adds Gaussian noise of that fraction of the box size to the box.
    """
    table = instance_table(gt_labels)
    centres = centroid_points(gt_labels, table)
    positives = centres.copy()
    radii = np.sqrt(table.areas / np.pi)
    for i, (ys, xs) in enumerate(table.slices):
        rows, cols = np.nonzero(table.seq[ys, xs] == i + 1)
        d2 = (cols + xs.start - centres[i, 0]) ** 2 + (rows + ys.start - centres[i, 1]) ** 2
        near = np.flatnonzero(d2 <= (jitter * radii[i]) ** 2)
        if near.size:
            j = near[rng.integers(near.size)]
            positives[i] = (cols[j] + xs.start, rows[j] + ys.start)
    bg = (gt_labels > 0).astype(np.float32)
    return _build_sets(table, positives, centres, bg, n_neg_neighbours, n_neg_background,
                       use_points, use_boxes, box_pad, neighbour_radius, rng, box_jitter)


def semantic_prompts(
    positives: np.ndarray,
    negatives: np.ndarray,
    max_points: int,
    rng: np.random.Generator | None = None,
) -> PromptSet:
    """All prompts of a tile in one set (the paper's semantic output), at most ``max_points``.

    When capping, positives and negatives keep their proportions (at least one of each kind
    that exists); the first ones are kept (inputs ordered by priority), or a random subset
    when ``rng`` is given. Varying ``max_points`` is the paper's "prompt amplification".
    """
    pos = np.asarray(positives, np.float32).reshape(-1, 2)
    neg = np.asarray(negatives, np.float32).reshape(-1, 2)
    total = len(pos) + len(neg)
    if total > max_points:
        n_pos = round(max_points * len(pos) / total)
        if len(pos) and max_points >= 1:
            n_pos = max(n_pos, 1)
        if len(neg) and max_points >= 2:
            n_pos = min(n_pos, max_points - 1)
        n_pos = min(n_pos, len(pos))
        n_neg = min(max_points - n_pos, len(neg))
        if rng is None:
            pos, neg = pos[:n_pos], neg[:n_neg]
        else:
            pos = pos[np.sort(rng.choice(len(pos), size=n_pos, replace=False))]
            neg = neg[np.sort(rng.choice(len(neg), size=n_neg, replace=False))]
    pts = np.concatenate([pos, neg]).astype(np.float32)
    lbl = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
    return PromptSet(pts, lbl, None, 0)


def batch_prompt_sets(
    sets: list[PromptSet], pad_to: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Pad prompt sets to ``points`` (B, P, 2) float32 and ``labels`` (B, P) int64, padding
    label -1 ("not a point", at (0, 0)), and ``boxes`` (B, 4) float32 or ``None`` if no set
    has one. P is the largest set's point count (0 for box-only sets), at least ``pad_to``.

    Padding tokens take part in SAM's attention, so a set's mask depends a little on P;
    a fixed ``pad_to`` (training) makes it independent of which sets share a batch."""
    if not sets:
        raise ValueError("no prompt sets to batch")
    has_box = [s.box is not None for s in sets]
    if any(has_box) and not all(has_box):
        raise ValueError("either every prompt set has a box or none does")
    p = max(pad_to, *(len(s.points) for s in sets))
    points = np.zeros((len(sets), p, 2), np.float32)
    labels = np.full((len(sets), p), -1, np.int64)
    for b, s in enumerate(sets):
        points[b, : len(s.points)] = s.points
        labels[b, : len(s.labels)] = s.labels
    boxes = np.stack([s.box for s in sets if s.box is not None]).astype(np.float32) \
        if all(has_box) else None
    return points, labels, boxes
