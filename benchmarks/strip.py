"""Long thin images: time and accuracy with and without folding (sac.pipeline.fold).

Synthetic nuclei (radius 10, bright on dark or dark on bright) tiled along a strip and cut by
its long edges, segmented at default settings, folded (the default) and unfolded; a 20 x 600
strip is too short to be folded, so it has one row per kind. Then the folded 20 x 1600 strip
of bright nuclei at foreground cuts 0.5 / 0.6 / 0.7 (the top of ``sac tune``'s grid).

``--margins mirror`` replaces the faded margins (:func:`sac.core.tiles.pad_faded`, used for
the gaps of a folded strip and for thin generator tiles) by a plain mirror, as before they
were faded, to measure what the fade changes. Writes
``results/strip/strip_<model>[_mirror].{json,md}``.
Run: ``.venv/bin/python benchmarks/strip.py --model sac-lite-dsb2018 [--margins mirror]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

import sac.pipeline.fold as fold_module
import sac.pipeline.maps as maps_module
import sac.pipeline.segmenter as segment_module
from sac.data.synthetic import disk_strip
from sac.metrics import evaluate_pair
from sac.model import load_model
from sac.pipeline.segmenter import Segmenter

from bench_common import machine_info, write_results

SHAPES = [(20, 4000), (40, 3000), (96, 3000), (20, 600)]
CUTS = (0.5, 0.6, 0.7)


def _mirror(image: np.ndarray, widths: tuple[tuple[int, int], tuple[int, int]]
            ) -> np.ndarray:
    """The plain mirror that the faded margins replaced."""
    return np.pad(image, list(widths) + [(0, 0)] * (image.ndim - 2), mode="symmetric")


def _row(seg: Segmenter, image: np.ndarray, truth: np.ndarray, **fields: object) -> dict:
    t0 = time.perf_counter()
    res = seg.segment(image)
    seconds = time.perf_counter() - t0
    m = evaluate_pair(truth, res.labels)
    row = {**fields, "nuclei": res.n_nuclei, "true": int(truth.max()),
           "f1_obj": round(m["f1_obj"], 4), "aji": round(m["aji"], 4),
           "seconds": round(seconds, 1), "folded": "folded into" in (res.size.note or "")}
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sac-lite-dsb2018")
    ap.add_argument("--margins", choices=("faded", "mirror"), default="faded")
    args = ap.parse_args()
    if args.margins == "mirror":
        fold_module.pad_faded = _mirror  # type: ignore[assignment]
        maps_module.pad_faded = _mirror  # type: ignore[assignment]
    info = machine_info() | {"model": args.model, "margins": args.margins}
    model = load_model(args.model)
    seg = Segmenter(model, precision="bf16")
    plan = segment_module.fold_plan
    rows = []
    for kind in ("bright", "dark"):
        for h, w in SHAPES:
            image, truth = disk_strip(h, w, dark=kind == "dark")
            modes = (("default", plan), ("unfolded", lambda *a: []))
            for mode, fold in modes[: 1 if w < 1000 else 2]:
                segment_module.fold_plan = fold
                rows.append(_row(seg, image, truth, kind=kind, shape=f"{h}x{w}", mode=mode,
                                 cut=model.config.thresholds.min_fg))
    segment_module.fold_plan = plan
    image, truth = disk_strip(20, 1600)
    for cut in CUTS:
        th = dataclasses.replace(model.config.thresholds, min_fg=cut)
        rows.append(_row(Segmenter(model, precision="bf16", thresholds=th), image, truth,
                         kind="bright", shape="20x1600", mode="default", cut=cut))
    name = f"strip_{Path(args.model).name.removeprefix('sac-lite-')}"
    name += "_mirror" if args.margins == "mirror" else ""
    _, md = write_results(name, info, rows, ["kind", "shape", "mode", "folded", "cut", "nuclei",
                                             "true", "f1_obj", "aji", "seconds"],
                          f"Long thin images, folded and unfolded ({args.model}, "
                          f"{args.margins} margins)")
    print(md.read_text())


if __name__ == "__main__":
    main()
