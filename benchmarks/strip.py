"""Long thin images: time and accuracy with and without folding (sac.pipeline.fold).

Synthetic bright nuclei (radius 10) tiled along a strip and cut by its long edges, segmented
with ``sac-lite-dsb2018`` at default settings, folded (the default) and unfolded. Writes
``results/strip.{json,md}``. Run: ``.venv/bin/python benchmarks/strip.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

import sac.pipeline.segmenter as segment_module
from sac.metrics import evaluate_pair
from sac.model import load_model
from sac.pipeline.segmenter import Segmenter

from bench_common import machine_info, write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic import grid_disks

SHAPES = [(20, 4000), (40, 3000), (96, 3000)]


def main() -> None:
    info = machine_info()
    seg = Segmenter(load_model("sac-lite-dsb2018"), bf16=True)
    grid, truth = grid_disks(10, n_side=3)
    plan = segment_module.fold_plan
    rows = []
    for h, w in SHAPES:
        n = w // grid.shape[1] + 1
        strip = np.tile(grid, (1, n, 1))[6: 6 + h, :w]
        gt = ndimage.label(np.tile(truth, (1, n))[6: 6 + h, :w] > 0)[0]
        for mode, fold in (("folded", plan), ("unfolded", lambda *a: [])):
            segment_module.fold_plan = fold
            t0 = time.perf_counter()
            res = seg.segment(strip)
            seconds = time.perf_counter() - t0
            m = evaluate_pair(gt, res.labels)
            rows.append({"shape": f"{h}x{w}", "mode": mode, "nuclei": res.n_nuclei,
                         "true": int(gt.max()), "f1_obj": round(m["f1_obj"], 4),
                         "aji": round(m["aji"], 4), "seconds": round(seconds, 1)})
            print(rows[-1], flush=True)
    segment_module.fold_plan = plan
    _, md = write_results("strip", info, rows, ["shape", "mode", "nuclei", "true", "f1_obj",
                                                 "aji", "seconds"],
                          "Long thin images, folded and unfolded (sac-lite-dsb2018)")
    print(md.read_text())


if __name__ == "__main__":
    main()
