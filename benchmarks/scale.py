"""Any magnification: accuracy of a model on its validation images shown at other scales.

Each validation image (and its labels, by nearest neighbour) is resampled by each factor in
``--factors``, as if taken at another magnification, and segmented with no scale flags, once
with the automatic scale (the default) and once at the model's own scale
(``auto_scale=False``, what SAC did before). Metrics are against the resampled labels.
A third row per factor, ``1x resampled``, scores the automatic result on the image as
acquired, resampled like the labels: what a perfectly scale-independent segmenter would
score on that grid. The gap between it and 1x is what the coarser grid itself costs (a
1-px boundary error weighs more on smaller nuclei), not the segmenter.

Run: ``.venv/bin/python benchmarks/scale.py --dataset dsb2018 --model sac-lite-dsb2018 --bf16
[--limit N]``. Writes ``results/scale/scale_<dataset>[_<tag>].{json,md,png}`` (the PNG needs
matplotlib: ``pip install 'segment-any-cell[bench]'``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from sac.core.images import to_rgb_float
from sac.core.resample import resample_image, resample_labels, scaled_shape
from sac.metrics import aggregate, evaluate_pair
from sac.model import load_model
from sac.pipeline.segmenter import Segmenter

from bench_common import (
    RESULTS,
    bf16_of,
    machine_info,
    validation_parser,
    validation_set,
    write_results,
)

KEYS = ["aji", "dsb_score", "pixel_dice", "f1_obj"]
REF = "1x resampled"


def as_uint8(rgb: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] as 8 bits, as a user's file would hold it."""
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def plot(table: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, style in (("automatic", "-"), ("model scale", "-"), (REF, ":")):
        rows = [r for r in table if r["mode"] == mode]
        ax.plot([r["factor"] for r in rows], [r["aji"] for r in rows], style, marker="o",
                label=mode)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("image resampled by (1 = as acquired)")
    ax.set_ylabel("AJI")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--factors", type=float, nargs="+", default=[0.25, 0.5, 1, 2, 3, 4])
    args = p.parse_args()
    info = machine_info()  # at the start: the commit whose code runs
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    model = load_model(args.model)
    segs = {"automatic": Segmenter(model, precision=args.precision),
            "model scale": Segmenter(model, precision=args.precision, auto_scale=False)}
    info["nucleus_diameter"] = model.config.nucleus_diameter
    info["nucleus_diameter_range"] = model.config.nucleus_diameter_range
    table: list[dict[str, Any]] = []
    md = RESULTS
    ref: dict[str, np.ndarray] = {}  # automatic labels of each image as acquired
    for factor in args.factors:
        rows: dict[str, list[dict[str, float]]] = {m: [] for m in [*segs, REF]}
        seconds = dict.fromkeys(segs, 0.0)
        scales: list[float] = []
        for name in names:
            s = dataset[name]
            rgb1 = to_rgb_float(s.image, name)
            image = as_uint8(resample_image(rgb1, factor))
            gt = resample_labels(s.labels, scaled_shape(s.labels.shape, factor))
            if name not in ref:
                ref[name] = segs["automatic"].segment(as_uint8(rgb1), name).labels
            rows[REF].append(evaluate_pair(gt, resample_labels(ref[name], gt.shape)))
            for mode, seg in segs.items():
                t0 = time.perf_counter()
                res = seg.segment(image, name)
                seconds[mode] += time.perf_counter() - t0
                rows[mode].append(evaluate_pair(gt, res.labels))
                if mode == "automatic" and res.size is not None:
                    scales.append(res.size.scale)
        for mode, rs in rows.items():
            agg = aggregate(rs)
            table.append({"factor": factor, "mode": mode, "images": len(rs),
                          **{k: round(float(agg[k]), 4) for k in KEYS},
                          "median_scale_used": round(float(np.median(scales)), 3)
                          if mode == "automatic" and scales
                          else model.config.input_scale if mode in seconds else None,
                          "s_per_image": round(seconds[mode] / len(rs), 2)
                          if mode in seconds else None})
            print(table[-1], flush=True)
        md = save(table, info, args)  # after every factor: a stopped run keeps its rows
    print(md.read_text())


def save(table: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> Path:
    """Write the table (JSON, markdown) and the plot; returns the markdown file."""
    info = dict(info, dataset=args.dataset, model=str(args.model), bf16=bf16_of(args),
                images=args.limit or "all", factors_asked=args.factors)
    name = f"scale_{args.dataset}" + (f"_{args.tag}" if args.tag else "")
    _, md = write_results(name, info, table, ["factor", "mode", "images", *KEYS,
                                              "median_scale_used", "s_per_image"],
                          f"Accuracy at other magnifications ({args.dataset} validation)")
    plot(table, RESULTS / f"{name}.png", f"{args.model} on {args.dataset} validation images")
    return md


if __name__ == "__main__":
    main()
