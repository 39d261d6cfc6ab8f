"""Who gets the pixels that two of SAM's masks claim, and which masks are duplicates: merge
rules scored on the validation images with a shipped model.

The merge (:mod:`sac.pipeline.merge`) paints masks best score first; a mask with less than
``min_visible`` of its area still free is a duplicate, and a kept mask loses the pixels a
better one took. When SAM's mask for one nucleus spills onto a neighbour, that neighbour loses
its rim, or all of itself when too little stays free (a merge). The rules tried: shared pixels
to the higher logit instead of the better score (``logit``), and duplicates decided by IoU with
a better kept mask (``iou>T``), with either ownership. Each rule runs the whole pipeline (the
model's thresholds, completion included) through one embedding cache.

Run: ``.venv/bin/python benchmarks/overlaps.py --dataset monuseg --model sac-lite-monuseg
--bf16``. Writes ``results/overlaps_<dataset>[_<tag>]``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import sac.pipeline.segmenter as segmenter
from sac.core.labels import InstanceMask, largest_component
from sac.data.splits import load_builtin_split
from sac.metrics import aggregate, evaluate_pair
from sac.model import load_model
from sac.pipeline import merge
from sac.sam.predictor import EmbeddingCache

from bench_common import machine_info, validation_parser, validation_set, write_results

KEYS = ["pixel_dice", "aji", "pq", "f1_obj", "dsb_score"]
Merge = Callable[[list[InstanceMask], tuple[int, int], int, float],
                 tuple[np.ndarray, np.ndarray]]


def iou_rule(iou_max: float, own: str) -> Merge:
    """Duplicates: masks whose IoU with a better kept mask exceeds ``iou_max``; the kept
    masks' shared pixels go to the better score or (``own="logit"``) the higher logit."""

    def rule(instances: list[InstanceMask], shape: tuple[int, int], min_area: int,
             min_visible: float) -> tuple[np.ndarray, np.ndarray]:
        kept: list[InstanceMask] = []
        boxes: list[tuple[tuple[slice, slice], np.ndarray, int]] = []
        for inst in sorted(instances, key=lambda m: -m.score):
            clipped = merge._clip(inst, shape)
            if clipped is None:
                continue
            (ys, xs), m = clipped
            area = int(m.sum())
            if area < max(min_area, 1) or any(
                    _iou((ys, xs), m, area, *other) > iou_max for other in boxes):
                continue
            kept.append(inst)
            boxes.append(((ys, xs), m, area))
        labels = np.zeros(shape, np.uint32)
        for k, ((ys, xs), m, _) in enumerate(boxes, 1):
            region = labels[ys, xs]
            free = m & (region == 0)
            if free.any():
                region[largest_component(free)] = k
        if own == "logit" and kept:
            labels = merge._by_logit(kept, shape, labels, min_area)
        counts = np.bincount(labels.ravel(), minlength=len(kept) + 1)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(len(kept) + 1, np.uint32)
        lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint32)
        return lut[labels], np.asarray([kept[i - 1].score for i in ids], np.float32)

    return rule


def _iou(box: tuple[slice, slice], m: np.ndarray, area: int, obox: tuple[slice, slice],
         om: np.ndarray, oarea: int) -> float:
    """IoU of two clipped masks given with their slices in the image."""
    (ys, xs), (oys, oxs) = box, obox
    y0, y1 = max(ys.start, oys.start), min(ys.stop, oys.stop)
    x0, x1 = max(xs.start, oxs.start), min(xs.stop, oxs.stop)
    if y1 <= y0 or x1 <= x0:
        return 0.0
    inter = int((m[y0 - ys.start:y1 - ys.start, x0 - xs.start:x1 - xs.start]
                 & om[y0 - oys.start:y1 - oys.start, x0 - oxs.start:x1 - oxs.start]).sum())
    return inter / (area + oarea - inter)


def rules() -> dict[str, Merge]:
    """Every rule tried, the shipped one first."""
    out: dict[str, Merge] = {
        "score (shipped)": lambda i, s, a, v: merge.merge_scored(i, s, a, v, "score"),
        "logit": lambda i, s, a, v: merge.merge_scored(i, s, a, v, "logit"),
    }
    for t in (0.3, 0.4, 0.5, 0.6):
        out[f"iou>{t} + score"] = iou_rule(t, "score")
        out[f"iou>{t} + logit"] = iou_rule(t, "logit")
    return out


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", required=True, help="model folder or shipped name")
    args = p.parse_args()
    info: dict[str, Any] = machine_info()
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    types = load_builtin_split(args.dataset).meta.get("types", {})
    model = load_model(args.model)
    th = dataclasses.replace(model.config.thresholds, overlaps="logit")  # keep the logits
    chosen: dict[str, Merge] = {}

    def patched(instances: list[InstanceMask], shape: tuple[int, int], min_area: int = 1,
                min_visible: float = 0.5, overlaps: str = "score"
                ) -> tuple[np.ndarray, np.ndarray]:
        return chosen["rule"](instances, shape, min_area, min_visible)

    segmenter.merge_scored = patched  # type: ignore[assignment]
    seg = segmenter.Segmenter(model, bf16=args.bf16, thresholds=th,
                              embeddings=EmbeddingCache())
    table: list[dict[str, Any]] = []
    for name, rule in rules().items():
        chosen["rule"] = rule
        t0 = time.perf_counter()
        scored = [evaluate_pair(dataset[n].labels, seg.segment(dataset[n].image, n).labels)
                  for n in names]
        seconds = time.perf_counter() - t0
        groups: dict[str, list[dict[str, float]]] = {"all": scored}
        for n, r in zip(names, scored, strict=True):
            if n in types:
                groups.setdefault(types[n], []).append(r)
        for group, rows in groups.items():
            agg = aggregate(rows)
            table.append({"rule": name, "image_type": group, "images": len(rows),
                          **{k: round(float(agg[k]), 4) for k in KEYS},
                          "seconds": round(seconds, 1) if group == "all" else ""})
        print(table[-len(groups)], flush=True)
    info.update(dataset=args.dataset, model=str(args.model), bf16=args.bf16,
                images=len(names), thresholds=dataclasses.asdict(model.config.thresholds),
                note="each rule: the whole pipeline with the model's thresholds on all "
                     "validation images; seconds include the encoder for the first rule only "
                     "(embedding cache)")
    tag = f"_{args.tag}" if args.tag else ""
    _, md = write_results(f"overlaps_{args.dataset}{tag}", info, table,
                          ["rule", "image_type", "images", *KEYS, "seconds"],
                          f"Merge rules on the {args.dataset} validation split")
    print(md.read_text())


if __name__ == "__main__":
    main()
