"""Does the evidence check (no nuclei without contrast above noise) cost real images anything?

Two parts, written to ``results/evidence/evidence_<dataset>[_<tag>].{json,md}``:

1. the contrast-to-noise ratio (:func:`sac.pipeline.evidence.image_evidence`) of every image
   of the dataset (training and validation), against the threshold under which an image
   counts as blank;
2. on the validation images, the shipped (or given) model with the check off and on: the
   nuclei the check removes, how many of them match a true nucleus (IoU >= 0.5), and the
   accuracy both ways, per image type for DSB. Both come from one run per image: the check's
   removal step is applied to the labels of the unchecked run.

Run: ``.venv/bin/python benchmarks/evidence.py --dataset dsb2018 --bf16``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sac.data import load_builtin_split
from sac.metrics import aggregate, evaluate_pair
from sac.metrics.objects import matched_pairs, overlap
from sac.model import load_model
from sac.pipeline.evidence import MIN_IMAGE_SNR, drop_flat_nuclei, image_evidence
from sac.pipeline.segmenter import Segmenter

from bench_common import DATASETS, machine_info, validation_parser, validation_set, write_results

KEYS = ["pixel_dice", "aji", "pq", "f1_obj", "dsb_score"]
MODELS = {"monuseg": "sac-lite-monuseg", "dsb2018": "sac-lite-dsb2018"}


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", default=None, help="default: the dataset's shipped model")
    args = p.parse_args()
    info = machine_info()  # at the start: the commit whose code runs
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    snrs = sorted((image_evidence(dataset[n].image).snr, n) for n in dataset.names)
    info.update({"images_checked": len(snrs), "min_image_snr_threshold": MIN_IMAGE_SNR,
                 "lowest_image_snr": f"{snrs[0][0]:.1f} ({snrs[0][1]})",
                 "image_snr_p5_median": (round(float(snrs[len(snrs) // 20][0]), 1),
                                         round(float(snrs[len(snrs) // 2][0]), 1)),
                 "images_below_threshold": int(sum(s < MIN_IMAGE_SNR for s, _ in snrs))})
    model = args.model or MODELS[args.dataset]
    seg = Segmenter(load_model(model), precision=args.precision, check_evidence=False)
    info.update({"model": model, "validation_images": len(names)})
    types = load_builtin_split(DATASETS[args.dataset][0]).meta.get("types", {})
    per: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        sample = dataset[name]
        raw = seg.segment(sample.image, name).labels
        checked, kept = drop_flat_nuclei(raw, image_evidence(sample.image))
        dropped = int(raw.max()) - len(kept)
        true_dropped = 0
        if dropped:
            gone = np.where(np.isin(raw, kept) | (raw == 0), 0, raw)
            true_dropped = len(matched_pairs(overlap(sample.labels, gone), 0.5)[0])
        per.append({"type": types.get(name, "all"), "dropped": dropped,
                    "dropped_true": true_dropped, "off": evaluate_pair(sample.labels, raw),
                    "on": evaluate_pair(sample.labels, checked)})
        print(f"[{i + 1}/{len(names)}] {name}: dropped {dropped} ({true_dropped} true)",
              flush=True)
    table = []
    groups = ["all", *sorted({r["type"] for r in per} - {"all"})]
    for group in groups:
        picked = [r for r in per if group in ("all", r["type"])]
        for mode in ("off", "on"):
            agg = aggregate([r[mode] for r in picked])
            table.append({"image_type": group, "check": mode, "images": len(picked),
                          "nuclei_dropped": sum(r["dropped"] for r in picked) if mode == "on"
                          else 0,
                          "true_nuclei_dropped": sum(r["dropped_true"] for r in picked)
                          if mode == "on" else 0,
                          **{k: round(float(agg[k]), 4) for k in KEYS}})
    name = f"evidence_{args.dataset}" + (f"_{args.tag}" if args.tag else "")
    _, md = write_results(name, info, table, ["image_type", "check", "images",
                                              "nuclei_dropped", "true_nuclei_dropped", *KEYS],
                          f"Evidence check on real images ({args.dataset})")
    print(md.read_text())


if __name__ == "__main__":
    main()
