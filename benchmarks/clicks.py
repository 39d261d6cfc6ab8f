"""Corrective clicks (the napari plugin's Correct widget) on 1000 x 1000 H&E images: how
fast, and how right.

For each MoNuSeg validation image and model: segment it, then click as a user would: a
positive click at the centre of each of up to ``--clicks`` true nuclei that SAC missed (no
label under the centre), and a negative click in the middle of as many of SAC's nuclei that
match no true nucleus. Every click goes through :class:`sac.pipeline.interactive.Corrector`,
as in the plugin: its SAM tiles are embedded once when correcting starts (``embed_s``, as the
Correct widget's Start does), then each click runs the mask decoder only.

Accuracy: a positive click scores the IoU of the nucleus it adds with the true nucleus
clicked (0 when SAM adds none); a negative click fixes its false nucleus when less than half
of it stays labelled. AJI and PQ of the whole image before and after all clicks. Each
``--neighbour-negatives`` value (how many labelled neighbours an added nucleus gets as
negative points; ``model``: the model's own setting) clicks the same targets on the same
segmentation, so the settings differ only in the prompts of added nuclei.

Run: ``.venv/bin/python benchmarks/clicks.py [--model NAME_OR_FOLDER ...]
[--neighbour-negatives model 0 2]``. Writes ``results/clicks/clicks[_TAG].{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from sac.cli.common import add_precision
from sac.core.labels import crop_to_content, innermost_pixel
from sac.metrics import evaluate_pair
from sac.metrics.errors import classify
from sac.metrics.objects import aji, overlap
from sac.pipeline.interactive import EMBEDDINGS, Corrector
from sac.pipeline.segmenter import load_segmenter

from bench_common import machine_info, validation_set, write_results

#: (positive, x, y, id): a missed true nucleus (its id in the truth) or a false one (its id
#: in the prediction)
Click = tuple[bool, float, float, int]
#: the simulated user's version (:func:`next_fix`), part of the key of cached click scores
POLICY = 2


def click_targets(gt: np.ndarray, pred: np.ndarray, n: int) -> list[Click]:
    """Up to ``n`` missed true nuclei (positive clicks) and ``n`` unmatched predictions
    (negative clicks), each clicked at its centre."""
    pos: list[Click] = []
    ids = np.unique(gt)[1:]
    for (cy, cx), k in zip(ndi.center_of_mass(gt > 0, gt, ids), ids, strict=True):
        r, c = int(cy), int(cx)
        if gt[r, c] == k and pred[r, c] == 0:
            pos.append((True, float(cx), float(cy), int(k)))
    neg: list[Click] = []
    for k in np.unique(pred)[1:]:
        own = pred == k
        if not (gt[own] > 0).mean() > 0.5:  # mostly background: a false nucleus
            dist = ndi.distance_transform_edt(own)
            r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
            neg.append((False, float(c), float(r), int(k)))
    return pos[:n] + neg[:n]


def click_all(cor: Corrector, gt: np.ndarray, targets: list[Click]
              ) -> tuple[dict[bool, list[float]], list[float], list[bool]]:
    """Click every target; returns the seconds per click by kind (True: positive), the IoU
    of each positive click's nucleus and, per negative click, whether its nucleus is gone."""
    times: dict[bool, list[float]] = {True: [], False: []}
    ious: list[float] = []
    fixed: list[bool] = []
    for positive, x, y, k in targets:
        own = gt == k if positive else cor.labels == k
        t = time.perf_counter()
        new = cor.add(x, y) if positive else cor.remove(x, y)
        times[positive].append(time.perf_counter() - t)
        if positive:
            mask = cor.labels == new if new else np.zeros_like(own)
            ious.append(float((mask & own).sum() / (mask | own).sum()))
        else:
            fixed.append(bool((cor.labels[own] == k).sum() < 0.5 * own.sum()))
    return times, ious, fixed


def deepest_point(labels: np.ndarray, k: int) -> tuple[int, int]:
    """The pixel (row, col) of object ``k`` farthest from its border: where a user clicks."""
    box = crop_to_content(labels == k)
    assert box is not None, f"no object {k}"
    r, c, _ = innermost_pixel(box.mask)
    return box.y0 + r, box.x0 + c


def next_fix(gt: np.ndarray, pred: np.ndarray, tried: set[tuple[Any, ...]]) -> Click | None:
    """The click a user makes next to fix ``pred``: the largest error first, of three kinds
    (:func:`sac.metrics.errors.classify`): a prediction that merges true nuclei is split (a
    positive click at the deepest point of each merged nucleus but the one holding the
    prediction's core), a missed true nucleus is added (a positive click at its deepest
    point, where nothing is labelled), an invented one removed (a negative click at its
    core). Splits of one nucleus into pieces and poor outlines are left alone. ``tried`` holds
    the clicks made, so a click SAM cannot act on is not repeated; None when nothing is left
    to click."""
    c = classify(gt, pred)
    ov = overlap(gt, pred)
    candidates: list[tuple[int, bool, int]] = []  # (area, positive, id)
    merged = np.isin(ov.rows, np.flatnonzero(c.gt_class == "merged"))
    in_merge = merged & (ov.inter >= 0.5 * ov.gt_areas[ov.rows])
    for j in set(ov.cols[in_merge].tolist()):
        cy, cx = deepest_point(pred, int(c.pred_labels[j]))
        for i in ov.rows[in_merge & (ov.cols == j)]:
            if gt[cy, cx] != c.gt_labels[i]:  # the nucleus the prediction keeps
                candidates.append((int(ov.gt_areas[i]), True, int(c.gt_labels[i])))
    for i in np.flatnonzero(c.gt_class == "missed"):
        candidates.append((int(ov.gt_areas[i]), True, int(c.gt_labels[i])))
    for j in np.flatnonzero(c.pred_class == "invented"):
        candidates.append((int(ov.pred_areas[j]), False, int(c.pred_labels[j])))
    for _, positive, k in sorted(candidates, reverse=True):
        r, col = deepest_point(gt if positive else pred, k)
        key = (positive, k) if positive else (positive, r, col)
        if key in tried:
            continue
        tried.add(key)
        return positive, float(col), float(r), k
    return None


def click_curve(cor: Corrector, gt: np.ndarray, n: int) -> list[float]:
    """AJI of ``cor.labels`` before and after each of up to ``n`` clicks of
    :func:`next_fix` (stops early, repeating the last value, when nothing is left)."""
    tried: set[tuple[Any, ...]] = set()
    curve = [aji(gt, cor.labels)]
    for _ in range(n):
        click = next_fix(gt, cor.labels, tried)
        if click is None:
            curve += [curve[-1]] * (n + 1 - len(curve))
            break
        positive, x, y, _ = click
        cor.add(x, y) if positive else cor.remove(x, y)
        curve.append(aji(gt, cor.labels))
    return curve


def label_of(model: str) -> str:
    """A short row label: a shipped name, or a run folder's name for ``<run>/model``."""
    p = Path(model)
    return p.parent.name if p.name == "model" and p.parent.name else p.name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", nargs="+", default=["sac-lite-monuseg"],
                   help="shipped model names or model folders")
    p.add_argument("--neighbour-negatives", nargs="+", default=["model"],
                   help="'model' (the model's own setting) and/or counts")
    p.add_argument("--clicks", type=int, default=10, help="positive and negative, per image")
    p.add_argument("--limit", type=int, default=None)
    add_precision(p)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    settings = [None if v == "model" else int(v) for v in args.neighbour_negatives]
    dataset, names = validation_set("monuseg", limit=args.limit)
    rows: list[dict[str, Any]] = []
    for model in args.model:
        seg = load_segmenter(model, precision=args.precision)
        own = seg.config.prompts.neighbour_negatives  # 'model' and its count: one setting
        counts = list(dict.fromkeys(own if v is None else v for v in settings))
        pooled: dict[int, dict[str, list[Any]]] = {}
        for name in names:
            s = dataset[name]
            EMBEDDINGS.clear()  # a new image: nothing cached
            t0 = time.perf_counter()
            res = seg.segment(s.image, name)
            seg_s = time.perf_counter() - t0
            targets = click_targets(s.labels, res.labels, args.clicks)
            before = evaluate_pair(s.labels, res.labels)
            for i, neg in enumerate(counts):
                cor = Corrector(seg, s.image, res.labels, res.size.scale, neighbour_negatives=neg)
                t0 = time.perf_counter()
                cor.embed_all()  # from the cache for every setting after the first
                embed_s = time.perf_counter() - t0
                times, ious, fixed = click_all(cor, s.labels, targets)
                after = evaluate_pair(s.labels, cor.labels)
                acc = pooled.setdefault(cor.neighbour_negatives, {
                    "add": [], "remove": [], "ious": [], "fixed": [], "embed": [], "aji": [],
                    "pq": []})
                acc["add"] += times[True]
                acc["remove"] += times[False]
                acc["ious"] += ious
                acc["fixed"] += fixed
                acc["aji"].append((before["aji"], after["aji"]))
                acc["pq"].append((before["pq"], after["pq"]))
                if i == 0:
                    acc["embed"].append(embed_s)
                rows.append(_row(label_of(model), cor.neighbour_negatives, name, times, ious,
                                 fixed, (before["aji"], after["aji"]),
                                 (before["pq"], after["pq"]),
                                 model_negatives=own,
                                 segment_s=round(seg_s, 2) if i == 0 else "",
                                 embed_s=round(embed_s, 2) if i == 0 else "",
                                 tiles=cor.encoded if i == 0 else ""))
                print(rows[-1], flush=True)
        for neg, acc in pooled.items():
            aji = np.mean(acc["aji"], axis=0)
            pq = np.mean(acc["pq"], axis=0)
            times = {True: acc["add"], False: acc["remove"]}
            rows.append(_row(label_of(model), neg, "all", times, acc["ious"],
                             acc["fixed"], (float(aji[0]), float(aji[1])),
                             (float(pq[0]), float(pq[1])), model_negatives=own,
                             embed_s=round(statistics.median(acc["embed"]), 2)
                             if acc["embed"] else "",
                             p90_click_s=round(float(np.percentile(
                                 acc["add"] + acc["remove"], 90)), 3)))
    info = {**machine_info(), "models": ", ".join(args.model), "images": len(names),
            "precision": args.precision,
            "note": "embed_s: all SAM tiles of the image embedded once (the Correct widget's "
                    "Start); click times after that (median_add_s: positive clicks, which decode "
                    "and paste one nucleus; median_remove_s: negative clicks, which remove or "
                    "re-decode one). iou_added: IoU of each positive "
                    "click's new nucleus with the true one (0 when none added); good_added: "
                    "share of them with IoU >= 0.5; fixed: share of negative clicks whose "
                    "false nucleus is gone. AJI/PQ of the image before -> after all clicks "
                    "(all: mean over images). model_negatives: the neighbour negatives of the "
                    "model's own instance prompt sets (what it was trained with); "
                    "neighbour_negatives: what the clicks used."}
    cols = ["model", "model_negatives", "neighbour_negatives", "image", "segment_s",
            "embed_s", "tiles", "positive", "iou_added", "good_added", "negative", "fixed",
            "aji_before", "aji_after", "pq_before", "pq_after", "median_add_s",
            "median_remove_s", "p90_click_s", "max_click_s"]
    name = "clicks" + (f"_{args.tag}" if args.tag else "")
    write_results(name, info, rows, cols, "Corrective clicks: seconds and accuracy")


def _row(model: str, neg: int, image: str, times: dict[bool, list[float]], ious: list[float],
         fixed: list[bool], aji: tuple[float, float], pq: tuple[float, float],
         **extra: Any) -> dict[str, Any]:
    """One result row (an image, or ``all`` pooled over the images)."""
    return {"model": model, "neighbour_negatives": neg, "image": image, **extra,
            "positive": len(ious),
            "iou_added": round(float(np.mean(ious)), 4) if ious else "",
            "good_added": round(float(np.mean(np.array(ious) >= 0.5)), 4) if ious else "",
            "negative": len(fixed),
            "fixed": round(float(np.mean(fixed)), 4) if fixed else "",
            "aji_before": round(aji[0], 4), "aji_after": round(aji[1], 4),
            "pq_before": round(pq[0], 4), "pq_after": round(pq[1], 4),
            "median_add_s": round(statistics.median(times[True]), 3) if times[True] else "",
            "median_remove_s": (round(statistics.median(times[False]), 3)
                                if times[False] else ""),
            "max_click_s": round(max(times[True] + times[False]), 3)
            if times[True] or times[False] else ""}


if __name__ == "__main__":
    main()
