"""Bright and dark synthetic nuclei of many sizes, no flags: does each model find them all?

A generalist must work on fluorescence (bright nuclei on dark) and on brightfield or H&E (dark
nuclei on bright) at any size. For each model, nucleus radius (4-60 px) and contrast, a grid of
synthetic disks (the test suite's ``grid_disks``, at least 160 px of image) is segmented with
the default settings (automatic scale); the row reports nuclei found, nuclei matched at IoU
>= 0.5, the median matched IoU, the estimated diameter and the scale used.

Run: ``.venv/bin/python benchmarks/contrast.py --model sac-lite-dsb2018 --model PATH``.
Writes ``results/contrast/contrast[_<tag>].{json,md}``.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np

from sac.data.synthetic import grid_disks, matched_ious
from sac.model import load_model
from sac.pipeline.segmenter import Segmenter

from bench_common import machine_info, write_results

RADII = (4, 6, 10, 20, 40, 60)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True, help="model folder or name")
    p.add_argument("--radii", type=int, nargs="+", default=list(RADII))
    p.add_argument("--tag", default="")
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    for name in args.model:
        seg = Segmenter(load_model(name), precision="bf16")
        for dark in (False, True):
            for r in args.radii:
                n_side = max(3, math.ceil(160 / (3.2 * r)))
                image, truth = grid_disks(r, n_side=n_side, dark=dark)
                t0 = time.perf_counter()
                res = seg.segment(image)
                ious = matched_ious(truth, res.labels)
                good = [x for x in ious if x >= 0.5]
                rows.append({
                    "model": name, "nuclei": "dark on bright" if dark else "bright on dark",
                    "diameter_px": 2 * r, "true": n_side**2, "found": res.n_nuclei,
                    "matched": len(good),
                    "median_iou": round(float(np.median(ious)), 3) if ious else 0.0,
                    "estimated_px": round(res.size.diameter, 1) if res.size.diameter else "",
                    "scale": round(res.size.scale, 3),
                    "seconds": round(time.perf_counter() - t0, 2)})
                print(rows[-1], flush=True)
    info = machine_info()
    info.update(models=args.model, note="matched: true nuclei with a predicted one at IoU >= "
                "0.5; median_iou: over true nuclei, 0 where unmatched; default settings, bf16")
    name = "contrast" + (f"_{args.tag}" if args.tag else "")
    _, md = write_results(name, info, rows, list(rows[0]),
                          "Bright and dark synthetic nuclei, automatic scale")
    print(md.read_text())


if __name__ == "__main__":
    main()
