"""Resolution study: where a model that works at half resolution loses its nucleus edges.

For each model given, on the validation split of a dataset, one row per way of bringing the
masks back to the input size:

* ``model``: masks thresholded at the model's scale, labels resized by nearest neighbour (what
  SAC did up to this study);
* ``input``: each mask's low-resolution decoder logits interpolated straight to the input
  image's grid, then thresholded (the default since this study).

Each row gives the accuracy and the seconds per image end to end (image in memory, labels
out). Run: ``.venv/bin/python benchmarks/resolution.py --dataset monuseg --model
sac-lite-monuseg --bf16``. Writes ``results/resolution/resolution_<dataset>[_<tag>].{json,md}``.
"""

from __future__ import annotations

import time
from typing import Any

from sac.metrics import aggregate, evaluate_pair
from sac.model import load_model
from sac.pipeline.options import MASK_RESOLUTIONS
from sac.pipeline.segmenter import Segmenter

from bench_common import machine_info, validation_parser, validation_set, write_results

KEYS = ["pixel_dice", "aji", "pq", "f1_obj", "dsb_score"]


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", action="append", required=True,
                   help="model folder or shipped name (repeat for several)")
    args = p.parse_args()
    info = machine_info()  # at the start: the commit whose code runs
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    samples = [dataset[n] for n in names]
    table: list[dict[str, Any]] = []
    for path in args.model:
        model = load_model(path)
        for res in MASK_RESOLUTIONS:
            seg = Segmenter(model, precision=args.precision, mask_resolution=res)
            rows, seconds = [], 0.0
            for name, s in zip(names, samples, strict=True):
                t0 = time.perf_counter()
                labels = seg.segment(s.image, name).labels
                seconds += time.perf_counter() - t0
                rows.append(evaluate_pair(s.labels, labels))
            agg = aggregate(rows)
            table.append({"model": str(path), "mask_resolution": res, "images": len(rows),
                          **{k: round(float(agg[k]), 4) for k in KEYS},
                          "s_per_image": round(seconds / len(rows), 2)})
            print(table[-1], flush=True)
    info.update(dataset=args.dataset, split="built-in val", precision=args.precision,
                note="pixel_dice: mean over images; seconds: segmentation of an image in "
                     "memory, end to end")
    name = f"resolution_{args.dataset}" + (f"_{args.tag}" if args.tag else "")
    _, md = write_results(name, info, table, ["model", "mask_resolution", "images", *KEYS,
                                              "s_per_image"],
                          f"Mask resolution on the {args.dataset} validation split")
    print(md.read_text())


if __name__ == "__main__":
    main()
