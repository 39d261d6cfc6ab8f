"""Test-time augmentation of the prompt generator: does averaging its maps over flips and
transposes pay for its time?

The same trained model segments every validation image once per ``--tta`` value (1 = off; 2,
4, 8 views, :data:`sac.pipeline.maps.TTA_CHOICES`), with its own thresholds, which were tuned
without augmentation. Rows: accuracy (per image type where the split records types) and the
seconds per image, in total and in the generator stage (which includes the size estimate).

Run: ``.venv/bin/python benchmarks/tta.py --dataset monuseg --model sac-lite-monuseg --bf16``.
Writes ``results/tta/tta_<dataset>[_<tag>].{json,md}``.
"""

from __future__ import annotations

import time
from typing import Any

from sac.data.splits import load_builtin_split
from sac.metrics import aggregate, evaluate_pair
from sac.model import load_model
from sac.pipeline.segmenter import Segmenter

from bench_common import bf16_of, machine_info, validation_parser, validation_set, write_results

KEYS = ["pixel_dice", "aji", "pq", "f1_obj", "dsb_score"]


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--tta", type=int, nargs="+", default=[1, 4, 8])
    args = p.parse_args()
    info = machine_info()  # at the start: the commit whose code runs
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    model = load_model(args.model)
    segs = {n: Segmenter(model, precision=args.precision, tta=n) for n in args.tta}
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in segs}
    seconds = {n: [0.0, 0.0] for n in segs}  # total, generator stage
    for i, name in enumerate(names):
        s = dataset[name]
        for n, seg in segs.items():  # alternating, so load changes hit every setting alike
            t0 = time.perf_counter()
            res = seg.segment(s.image, name)
            seconds[n][0] += time.perf_counter() - t0
            seconds[n][1] += res.timings.get("generator", 0.0)
            rows[n].append(evaluate_pair(s.labels, res.labels))
        print(f"[{i + 1}/{len(names)}] {name}: AJI "
              + ", ".join(f"tta {n} {rows[n][-1]['aji']:.3f}" for n in segs), flush=True)
    split = load_builtin_split(args.dataset)
    types = [split.meta.get("types", {}).get(n, "all") for n in names]
    groups = ["all"] + (sorted(set(types)) if len(set(types)) > 1 else [])
    table: list[dict[str, Any]] = []
    for group in groups:
        for n, rs in rows.items():
            picked = [r for r, t in zip(rs, types, strict=True) if group in ("all", t)]
            agg = aggregate(picked)
            row: dict[str, Any] = {"tta": n, "image_type": group, "images": len(picked),
                                   **{k: round(float(agg[k]), 4) for k in KEYS}}
            if group == "all":
                row["s_per_image"] = round(seconds[n][0] / len(rs), 2)
                row["generator_s"] = round(seconds[n][1] / len(rs), 3)
            table.append(row)
    info.update(dataset=args.dataset, split="built-in val", model=str(args.model),
                bf16=bf16_of(args), images=len(names),
                note="generator_s: the generator stage, size estimate included")
    name = f"tta_{args.dataset}" + (f"_{args.tag}" if args.tag else "")
    _, md = write_results(name, info, table, ["tta", "image_type", "images", *KEYS,
                                              "s_per_image", "generator_s"],
                          f"Generator test-time augmentation ({args.dataset} validation)")
    print(md.read_text())


if __name__ == "__main__":
    main()
