"""Which model should a user who does not choose get? The generalist against ``--model auto``.

Per validation image (default ``sac segment`` settings): the image's type
(:func:`sac.core.images.image_type`), the scores of the shipped generalist
(``sac-lite-nuclei``), of the dataset's own specialist, and of the other specialist on the
bright-field images (where the choice between them is open). From these per-image scores:

* ``specialist``: the dataset's own model on every image (what an expert picks);
* ``generalist``: ``sac-lite-nuclei`` on every image;
* ``auto``: the model :data:`sac.pipeline.choose.MODEL_FOR` gives each image's type;
* ``auto, histology -> DSB model``: the same with stained bright-field images sent to the
  fluorescence/DSB model instead (the alternative routing);
* ``H&E model on everything``: the old default, where it was run.

Run: ``.venv/bin/python benchmarks/auto_model.py --dataset dsb2018 --bf16``. Writes
``results/auto_model/auto_model_<dataset>[_<tag>].{json,md}``: rows per option and image type.
"""

from __future__ import annotations

import time
from typing import Any

from sac.core.images import image_type
from sac.metrics import aggregate, evaluate_pair
from sac.pipeline.choose import MODEL_FOR
from sac.pipeline.segmenter import load_segmenter

from bench_common import bf16_of, machine_info, validation_parser, validation_set, write_results

KEYS = ["aji", "pq", "dsb_score", "f1_obj", "pixel_dice"]
COLUMNS = ["option", "type", "images", *KEYS]
OWN = {"monuseg": "sac-lite-monuseg", "dsb2018": "sac-lite-dsb2018"}
GENERALIST = "sac-lite-nuclei"


def main() -> None:
    p = validation_parser(__doc__)
    args = p.parse_args()
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    own = OWN[args.dataset]
    models = dict.fromkeys([own, GENERALIST, *MODEL_FOR.values()])
    segs = {m: load_segmenter(m, precision=args.precision) for m in models}
    per: dict[str, dict[str, dict[str, float]]] = {}  # image -> model -> scores
    kinds: dict[str, str] = {}
    t0 = time.perf_counter()
    for n in names:
        s = dataset[n]
        kinds[n] = image_type(s.image, n)
        run = {own, GENERALIST} | ({*MODEL_FOR.values()} if kinds[n] != "fluorescence"
                                   else set())
        per[n] = {m: evaluate_pair(s.labels, segs[m].segment(s.image, n).labels)
                  for m in sorted(run)}
        print(n, kinds[n], {m: round(v["aji"], 3) for m, v in per[n].items()}, flush=True)
    alt = {**MODEL_FOR, "histology": "sac-lite-dsb2018"}
    options: dict[str, Any] = {
        "specialist": lambda n: own, "generalist": lambda n: GENERALIST,
        "auto": lambda n: MODEL_FOR[kinds[n]],
        "auto, histology -> DSB model": lambda n: alt[kinds[n]],
        "H&E model on everything": lambda n: "sac-lite-monuseg"}
    rows = []
    for kind in ["all", *sorted(set(kinds.values()))]:
        sel = [n for n in names if kind in ("all", kinds[n])]
        for opt, pick in options.items():
            if not all(pick(n) in per[n] for n in sel):
                continue  # not run on every image of this group
            agg = aggregate([per[n][pick(n)] for n in sel])
            rows.append({"option": opt, "type": kind, "images": len(sel),
                         **{k: round(float(agg[k]), 4) for k in KEYS}})
    info = machine_info()
    info.update(dataset=args.dataset, images=len(names), bf16=bf16_of(args),
                seconds=round(time.perf_counter() - t0, 1),
                routing=", ".join(f"{k} -> {v}" for k, v in MODEL_FOR.items()))
    tag = f"_{args.tag}" if args.tag else ""
    write_results(f"auto_model_{args.dataset}{tag}", info, rows, COLUMNS,
                  f"The model a user does not choose: generalist against auto ({args.dataset})")


if __name__ == "__main__":
    main()
