"""What kind of mistakes SAC, its prompt generator alone and other tools' saved predictions
make on the same validation images: merged, split, missed and badly outlined nuclei, and
invented ones (:mod:`sac.metrics.errors`).

The detection study says SAC loses most of its AJI to detection; this says which detection
errors those are, and where a peer that scores higher does better. Each row also gives the
AJI with the invented predictions erased (what a perfect false-positive filter would reach).
``--filters`` adds rows for SAC with simple per-nucleus filters that might remove invented
nuclei: SAM's predicted IoU (``min_score``, 0.3 by default), the generator's mean foreground
probability under the mask, and its highest centre value in it. They are applied to one
segmentation made with ``min_score`` 0; masks are painted in decreasing score, so a stricter
score filter afterwards gives what segmenting with it gives (up to the completion step).

Run: ``.venv/bin/python benchmarks/errors.py --dataset monuseg --model sac-lite-monuseg --bf16
--predictions cellpose=../peers/runs/cellpose-monuseg/predictions``. Saved predictions are
``<name>_labels.tif`` files, as ``sac evaluate --predictions`` reads them. Writes
``results/errors/errors_<dataset>[_<tag>].{json,md}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from accuracy import generator_labels
from scipy import ndimage as ndi

from sac.core.images import to_rgb_float
from sac.core.resample import resample_image
from sac.data.images import read_labels
from sac.metrics import aggregate, evaluate_pair
from sac.metrics.errors import GT_CLASSES, classify, total_breakdown, without_invented
from sac.metrics.report import PREDICTION_SUFFIX
from sac.pipeline.segmenter import Segmenter, load_segmenter

from bench_common import machine_info, validation_parser, validation_set, write_results


def saved(folder: Path, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The saved prediction of image ``name``; exits naming the file if it is absent or has
    another shape than the image."""
    path = folder / f"{name}{PREDICTION_SUFFIX}"
    if not path.is_file():
        raise SystemExit(f"errors.py: {path} is missing; every validation image needs one")
    labels = read_labels(path)
    if labels.shape != shape:
        raise SystemExit(f"errors.py: {path} is {labels.shape}, the image {shape}")
    return labels


#: name -> keep(score, mean foreground, highest centre) per nucleus, for --filters
FILTERS: dict[str, Callable[[float, float, float], bool]] = {
    **{f"sac, score >= {t}": (lambda s, f, c, t=t: s >= t) for t in (0.4, 0.5, 0.6)},
    **{f"sac, mean fg >= {t}": (lambda s, f, c, t=t: s >= 0.3 and f >= t)
       for t in (0.5, 0.6, 0.7)},
    **{f"sac, centre >= {t}": (lambda s, f, c, t=t: s >= 0.3 and c >= t) for t in (0.3, 0.4)},
}


def filtered(seg: Segmenter, everything: Segmenter, image: np.ndarray, name: str
             ) -> dict[str, np.ndarray]:
    """SAC's labels under each of :data:`FILTERS`, from one segmentation by ``everything``
    (``seg`` with ``min_score`` 0, which keeps every mask; nuclei added by the completion,
    which have no score, are always kept)."""
    res = everything.segment(image, name)
    labels = res.labels
    rgb = to_rgb_float(image)
    maps = seg.generator_maps(resample_image(rgb, seg.config.input_scale))
    zoom = [a / b for a, b in zip(labels.shape, maps.fg.shape, strict=True)]
    ids = np.unique(labels)
    ids = ids[ids > 0]
    fg = np.asarray(ndi.mean(ndi.zoom(maps.fg, zoom, order=1), labels, ids))
    centre = np.asarray(ndi.maximum(ndi.zoom(maps.centre, zoom, order=1), labels, ids))
    out = {}
    for rule, keep in FILTERS.items():
        drop = [k for k, f, c in zip(ids.tolist(), fg, centre, strict=True)
                if k in res.scores and not keep(res.scores[k], float(f), float(c))]
        out[rule] = np.where(np.isin(labels, drop), 0, labels)
    return out


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", default="sac-lite-monuseg")
    p.add_argument("--predictions", action="append", default=[], metavar="NAME=DIR",
                   help="a method's saved <image>_labels.tif files (repeatable)")
    p.add_argument("--filters", action="store_true",
                   help="also SAC with per-nucleus false-positive filters (see above)")
    args = p.parse_args()
    started = machine_info()
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    seg = load_segmenter(args.model, precision=args.precision)
    folders = {}
    for item in args.predictions:
        method, _, folder = item.partition("=")
        if not method or not folder:
            raise SystemExit(f"bad --predictions {item!r}: expected NAME=DIR")
        folders[method] = Path(folder)
    methods = ["sac", "generator only", *folders, *(FILTERS if args.filters else ())]
    everything = Segmenter(seg.model, bf16=seg.bf16, thresholds=dataclasses.replace(
        seg.thresholds, min_score=0.0))
    per: dict[str, list[dict[str, int]]] = {m: [] for m in methods}
    scores: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    cleaned: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for name in names:
        sample = dataset[name]
        gt = sample.labels
        preds = {"sac": seg.segment(sample.image, name).labels,
                 "generator only": generator_labels(seg, sample.image)}
        preds.update({m: saved(f, name, gt.shape) for m, f in folders.items()})
        if args.filters:
            preds.update(filtered(seg, everything, sample.image, name))
        for method, labels in preds.items():
            classes = classify(gt, labels)
            per[method].append(classes.counts())
            scores[method].append(evaluate_pair(gt, labels))
            cleaned[method].append(evaluate_pair(gt, without_invented(gt, labels, classes)))
        print(name, {m: per[m][-1]["gt_matched"] for m in per}, flush=True)
    rows = []
    for method, counts in per.items():
        total = total_breakdown(counts)
        row: dict[str, Any] = {"method": method, "images": len(counts),
                               "aji": round(float(aggregate(scores[method])["aji"]), 4),
                               "n_gt": int(total["n_gt"]), "n_pred": int(total["n_pred"])}
        row.update({c: total[f"gt_{c}_share"] for c in GT_CLASSES})
        row["invented"] = total["pred_invented_share"]
        row["aji_without_invented"] = round(float(aggregate(cleaned[method])["aji"]), 4)
        row["counts"] = {k: int(v) for k, v in total.items() if not k.endswith("_share")}
        rows.append(row)
        print(row, flush=True)
    info = {**started, "dataset": args.dataset, "model": args.model, "precision": args.precision,
            "val_images": len(names), "predictions": {m: str(f) for m, f in folders.items()},
            "note": "matched..poor: shares of all true nuclei (each in one class: matched "
                    "IoU > 0.5; merged with a neighbour; split in 2+ pieces; missed; poor "
                    "outline); invented: share of all predictions lying mostly on background; "
                    "aji: as sac evaluate aggregates it; aji_without_invented: the same with the "
                    "invented predictions erased (a perfect false-positive filter: a bound)"}
    write_results(f"errors_{args.dataset}" + (f"_{args.tag}" if args.tag else ""), info, rows,
                  ["method", "images", "aji", "n_gt", "n_pred", *GT_CLASSES, "invented",
                   "aji_without_invented"],
                  f"Kinds of mistakes on the {args.dataset} validation split")


if __name__ == "__main__":
    main()
