"""Whole-slide throughput: megapixels of tissue per second at level 0, background skipped.

We hold no whole slides, so one is built from the H&E validation images (MoNuSeg, 40x,
0.25 um/px, 1000 x 1000): ``--grid`` x ``--grid`` cells, the first ``--tissue`` of them holding
a validation image each, the rest blank glass (near-white with faint noise), written as a tiled
pyramidal TIFF with its pixel size, in a temporary folder, never kept. The slide is then
segmented as ``sac segment --wsi`` does (:func:`sac.slides.segment.segment_slide`: tissue
mask, chunks, parts, GeoJSON and CSV written) with each ``--variant`` of settings in turn, on a
segmenter loaded once. Rows: seconds, level-0 megapixels of tissue per second (the validation
images' area), of the whole slide per second, chunks segmented and skipped, nuclei found, and
the mean AJI of the slide's labels over the validation images' cells against their labels.

Run: ``.venv/bin/python benchmarks/slide_speed.py --model sac-lite-monuseg
``. Writes ``results/slide_speed/slide_speed[_<tag>].{json,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from speed import BEFORE, parse_variant

from sac.cli.common import add_precision
from sac.metrics import evaluate_pair
from sac.model import load_model
from sac.pipeline.segmenter import Segmenter
from sac.slides.segment import segment_slide

from bench_common import machine_info, validation_set, write_results

PIXEL_UM = 0.25


def build_slide(path: Path, images: list[np.ndarray], grid: int, cell: int, seed: int = 0
                ) -> int:
    """Write the mosaic slide (image ``k`` in cell ``divmod(k, grid)``); returns the level-0
    pixels of tissue in it."""
    import tifffile

    rng = np.random.default_rng(seed)
    canvas = (238 + rng.integers(-4, 5, (grid * cell, grid * cell, 3))).astype(np.uint8)
    tissue = 0
    for k, img in enumerate(images):
        r, c = divmod(k, grid)
        h, w = min(cell, img.shape[0]), min(cell, img.shape[1])
        canvas[r * cell : r * cell + h, c * cell : c * cell + w] = img[:h, :w, :3]
        tissue += h * w
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        levels = [canvas, canvas[::4, ::4], canvas[::16, ::16]]
        for i, level in enumerate(levels):
            per_cm = 1e4 / (PIXEL_UM * 4**i)
            tw.write(level, tile=(256, 256), photometric="rgb", compression="zlib",
                     resolution=(per_cm, per_cm), resolutionunit="CENTIMETER",
                     subfiletype=1 if i else 0, **({"subifds": len(levels) - 1} if i == 0
                                                    else {}))
    return tissue


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="sac-lite-monuseg")
    p.add_argument("--grid", type=int, default=6, help="cells per side (1000 px each)")
    p.add_argument("--tissue", type=int, default=6, help="cells holding tissue")
    p.add_argument("--variant", action="append", default=None,
                   help=f"LABEL:key=value,... as in speed.py; default {BEFORE} and now:")
    add_precision(p)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    info = machine_info()
    dataset, names = validation_set("monuseg", None, args.tissue)
    images = [dataset[n].image for n in names]
    truths = [dataset[n].labels for n in names]
    model = load_model(args.model)
    variants = dict(parse_variant(v) for v in (args.variant or [BEFORE, "now:"]))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        slide = Path(tmp) / "mosaic.tif"
        tissue = build_slide(slide, images, args.grid, 1000)
        total = (args.grid * 1000) ** 2
        for label, kw in variants.items():
            seg = Segmenter(model, **{"precision": args.precision, **kw})
            seg.segment(images[0][:256, :256], "warm-up")
            res = segment_slide(seg, slide, Path(tmp) / label, progress=False,
                                return_labels=True)
            assert res.labels is not None and res.downsample == 1.0
            ajis = []
            for k, truth in enumerate(truths):
                r, c = divmod(k, args.grid)
                h, w = truth.shape
                cell = res.labels[r * 1000 : r * 1000 + h, c * 1000 : c * 1000 + w]
                ajis.append(evaluate_pair(truth, cell)["aji"])
            rows.append({"variant": label, "tile": seg.tile_size, "precision": seg.precision,
                         "runtime": seg.predictor.runtime, "seconds": round(res.seconds, 1),
                         "tissue_mpx": round(tissue / 1e6, 2),
                         "tissue_mpx_per_s": round(tissue / 1e6 / res.seconds, 3),
                         "slide_mpx_per_s": round(total / 1e6 / res.seconds, 3),
                         "chunks": res.n_chunks, "skipped": res.n_skipped_no_tissue,
                         "nuclei": res.n_nuclei, "aji": round(float(np.mean(ajis)), 4)})
            print(rows[-1], flush=True)
    info.update(model=args.model, slide=f"{args.grid * 1000} px square at {PIXEL_UM} um/px, "
                f"{args.tissue} validation images as tissue, the rest glass")
    cols = ["variant", "tile", "precision", "runtime", "seconds", "tissue_mpx",
            "tissue_mpx_per_s", "slide_mpx_per_s", "chunks", "skipped", "nuclei", "aji"]
    out = "slide_speed" + (f"_{args.tag}" if args.tag else "")
    _, md = write_results(out, info, rows, cols, "Whole-slide throughput (level 0, 40x)")
    print(md.read_text())


if __name__ == "__main__":
    main()
