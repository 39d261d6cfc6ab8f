"""How right is the automatic scale's size reading? Per validation image, shown at several
magnifications, the nuclei's true diameter against what the first round of
:func:`sac.pipeline.size.next_scale` reads, with the foreground objects' holes filled (the
default) and without, and whether each reading resamples the image.

Each validation image (and its labels, by nearest neighbour) is resampled by each of
``--factors`` as if taken at another magnification, then brought to the model's input scale
as ``sac segment`` does. The truth is the size statistic of :mod:`sac.pipeline.size` on the
labels; the readings are the generator's foreground mask's (filled or not), the size head's
(dropped where it extrapolates, :func:`sac.pipeline.size.head_span`), and the two combined
(:func:`sac.pipeline.size.reading`), all in input pixels. Only the generator runs (no SAM),
but an image enlarged 4x costs 16x, so a whole DSB split at 0.5-4x takes about 8 minutes per
model on 2 cores.

Run: ``.venv/bin/python benchmarks/size_reading.py --dataset dsb2018 --model sac-lite-dsb2018
--bf16 [--factors 0.5 1 2 4]``. Writes
``results/size_reading/size_reading_<dataset>[_<tag>].{json,md}``
(per-factor summaries) and ``..._images.json`` (the per-image readings).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np

from sac.core.fileio import atomic_path
from sac.core.images import to_rgb_float
from sac.core.resample import resample_image, resample_labels, scaled_shape
from sac.model import load_model
from sac.model.size_head import image_style
from sac.pipeline.segmenter import Segmenter
from sac.pipeline.size import (
    MIN_DIAMETER,
    MIN_OBJECTS,
    head_span,
    label_diameters,
    median_diameter,
    next_scale,
    trusted_head,
    weighted_median,
)

from bench_common import machine_info, validation_parser, validation_set, write_results

COLUMNS = ["model", "factor", "fill_holes", "images", "mask_within_1.5x", "read_within_1.5x",
           "median_abs_log_error", "resampled", "decisions_changed", "head_dropped",
           "worst_ratio"]


def true_diameter(labels: np.ndarray) -> float | None:
    """The size statistic on the labels (``None`` with too few objects)."""
    d = label_diameters(labels)
    d = d[d >= MIN_DIAMETER]
    return weighted_median(d) if d.size >= MIN_OBJECTS else None


def image_row(seg: Segmenter, rgb0: np.ndarray, labels: np.ndarray) -> dict[str, Any] | None:
    """Readings of one image (input pixels), filled and not; ``None`` without a truth."""
    truth = true_diameter(labels)
    if truth is None:
        return None
    cfg, model = seg.config, seg.model
    scale = cfg.input_scale
    rgb = resample_image(rgb0, scale)
    mask = seg.generator_maps(rgb).fg >= seg.thresholds.fg
    head = None if model.size_head is None else model.size_head.predict(
        image_style(model.generator, rgb))
    rng = cfg.nucleus_diameter_range
    span = head_span(rng, (cfg.size_head or {}).get("factors"))
    row: dict[str, Any] = {"truth": truth, "head": None if head is None else head / scale,
                           "head_dropped": False}
    if head is not None:  # dropped where it extrapolates, as the segmenter does
        head = trusted_head(head, span)
        row["head_dropped"] = head is None
    for fill in (False, True):
        key = "filled" if fill else "open"
        d, _ = median_diameter(mask, fill)
        row[f"mask_{key}"] = None if d is None else d / scale
        new, read, _, _ = next_scale(cfg.nucleus_diameter, scale, mask,
                                     None if rng is None else rng[0], head, first=True,
                                     fill_holes=fill)
        row[f"read_{key}"] = read  # the combined reading, in input pixels
        row[f"resample_{key}"] = new is not None
    return row


def within(x: float | None, truth: float, factor: float = 1.5) -> bool:
    """Whether a reading lies within ``factor`` of the truth either way."""
    return x is not None and 1 / factor <= x / truth <= factor


def summarize(model: str, factor: float, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per reading (open, filled) over the images of one factor."""
    out = []
    changed = sum(r["resample_open"] != r["resample_filled"] for r in rows)
    for key in ("open", "filled"):
        errs = [abs(math.log(r[f"read_{key}"] / r["truth"])) for r in rows
                if r[f"read_{key}"] is not None]
        ratios = [r[f"read_{key}"] / r["truth"] for r in rows if r[f"read_{key}"] is not None]
        worst = max(ratios, key=lambda q: abs(math.log(q))) if ratios else None
        out.append({
            "model": model, "factor": factor, "fill_holes": key == "filled", "images": len(rows),
            "mask_within_1.5x": sum(within(r[f"mask_{key}"], r["truth"]) for r in rows),
            "read_within_1.5x": sum(within(r[f"read_{key}"], r["truth"]) for r in rows),
            "median_abs_log_error": round(float(np.median(errs)), 4) if errs else None,
            "resampled": sum(r[f"resample_{key}"] for r in rows),
            "decisions_changed": changed,
            "head_dropped": sum(r["head_dropped"] for r in rows),
            "worst_ratio": None if worst is None else float(f"{worst:.3g}")})
    return out


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", nargs="+", required=True)
    p.add_argument("--factors", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    args = p.parse_args()
    info = machine_info()
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    info.update(dataset=args.dataset, models=args.model, factors=args.factors,
                val_images=len(names), precision=args.precision)
    summary: list[dict[str, Any]] = []
    per_image: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for name_model in args.model:
        seg = Segmenter(load_model(name_model), precision=args.precision)
        for factor in args.factors:
            rows = []
            for name in names:
                s = dataset[name]
                rgb0 = resample_image(to_rgb_float(s.image, name), factor)
                labels = resample_labels(s.labels, scaled_shape(s.labels.shape, factor))
                row = image_row(seg, rgb0, labels)
                if row is not None:
                    rows.append(row)
                    per_image.append({"model": name_model, "factor": factor, "name": name, **row})
            summary += summarize(name_model, factor, rows)
            print(summary[-2], summary[-1], sep="\n", flush=True)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    info["note"] = ("readings in input pixels; within_1.5x: images whose reading lies within "
                    "1.5x of the labels' statistic; read: the mask's and the size head's "
                    "readings combined as the automatic scale does; resampled: images the "
                    "first round would resample; decisions_changed: images where filling the "
                    "holes changes that decision; head_dropped: images whose size-head "
                    "reading lay outside the sizes it was fitted on and was dropped; "
                    "worst_ratio: the reading over the truth farthest from 1")
    tag = f"_{args.tag}" if args.tag else ""
    name = f"size_reading_{args.dataset}{tag}"
    js, md = write_results(name, info, summary, COLUMNS,
                           f"Size readings on the {args.dataset} validation split")
    with atomic_path(js.with_name(f"{name}_images.json"), overwrite=True) as tmp:
        tmp.write_text(json.dumps(per_image, indent=1) + "\n")
    print(f"wrote {js}, {md} and the per-image rows beside them")


if __name__ == "__main__":
    main()
