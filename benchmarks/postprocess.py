"""What each post-processing setting of ``sac tune`` does on the validation images.

Runs the tuner exactly as ``sac tune`` does (detection thresholds on the generator's own
detections, then the ``--settings`` on the whole pipeline one after another — by default SAM's
mask logit threshold and the generator's foreground cut — then the completion from the semantic
mask; :func:`sac.training.tune.tune_model_folder`) on a copy of ``--model`` written
to ``--output``, and tabulates every value tried: pixel Dice, AJI, PQ, object F1 and DSB score
of the whole pipeline with that value (the settings tuned before it fixed, the completion
off), and which value was chosen (best pixel Dice + the model's checkpoint-selection metric,
as ``sac tune`` by default; the old value unless another beats it by more than 0.001). The
tuned copy is what ``scripts/ship_model.py`` ships.

Run: ``.venv/bin/python benchmarks/postprocess.py --dataset dsb2018 --model sac-lite-dsb2018
--output ../runs/post_dsb/model --bf16``. Writes
``results/postprocess/postprocess_<dataset>[_<tag>]``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sac.model import read_config, resolve_model
from sac.training.sampler import load_images
from sac.training.tune import (
    DEFAULT_SETTINGS,
    SCORED,
    SETTINGS,
    at_own_size,
    setting_record,
    tune_model_folder,
)

from bench_common import bf16_of, machine_info, validation_parser, validation_set, write_results


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", required=True, help="model folder or shipped name")
    p.add_argument("--output", type=Path, required=True, help="new folder for the tuned copy")
    p.add_argument("--settings", nargs="+", choices=tuple(SETTINGS),
                   default=list(DEFAULT_SETTINGS),
                   help="whole-pipeline settings to tune, as sac tune --settings (default: "
                   "sac tune's)")
    args = p.parse_args()
    if args.output.exists():
        p.error(f"{args.output} already exists; choose a new folder")
    info: dict[str, Any] = machine_info()  # at the start: the commit whose code runs
    folder = resolve_model(args.model)
    scale = read_config(folder).input_scale
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    images, problems = load_images(dataset, list(names), scale)
    if problems:
        raise SystemExit("unreadable validation images: " + "; ".join(problems))
    full = at_own_size(dataset, images, scale)
    t0 = time.perf_counter()
    s = tune_model_folder(folder, images, args.output, bf16_of(args), fill=True, full=full,
                          settings=tuple(args.settings))
    seconds = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    for name in SETTINGS:
        rec = setting_record(s, name)
        if rec is None:  # not tuned
            continue
        for r in rec["table"]:
            rows.append({"setting": name, "value": r[name],
                         **{k: r[k] for k in SCORED}, "criterion": r["score"],
                         "chosen": "yes" if r[name] == rec["value"] else ""})
    fill = s["fill"]
    info.update({
        "dataset": args.dataset, "model": str(args.model), "output": str(args.output),
        "precision": args.precision, "images": len(images), "tune_seconds": round(seconds, 1),
        "settings": [n for n in SETTINGS if n in args.settings],
        "criterion": s["fill"]["metric"],
        "detection": {k: s[k] for k in ("fg", "centre", "min_distance")},
        "generator_choice": {**s.get("generator_choice", {}), "f1_obj": s["score"]},
        "fill": {k: fill[k] for k in ("fill_new_area", "fill_attach", "default_score",
                                      "score")},
        "note": "each row: the whole pipeline on all validation images at their own size "
                "(as sac segment), the settings above it in the table at their chosen "
                "values, the completion off; chosen = best criterion, the model's "
                "old value unless another beats it by more than 0.001; the completion was then "
                "re-tuned on the chosen masks (fill)"})
    cols = ["setting", "value", *SCORED, "criterion", "chosen"]
    tag = f"_{args.tag}" if args.tag else ""
    js, md = write_results(f"postprocess_{args.dataset}{tag}", info, rows, cols,
                           f"Post-processing settings tuned on the {args.dataset} validation "
                           "split")
    print(f"wrote {js} and {md}; tuned model in {args.output} ({seconds / 60:.1f} min)")


if __name__ == "__main__":
    main()
