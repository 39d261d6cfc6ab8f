"""Seeding study: where the watershed's seeds come from, for models whose generator predicts
horizontal/vertical (hv) maps.

Two ways to seed the detection on the same generator maps (:mod:`sac.pipeline.nuclei`): the
centre map's peaks (``hv_split`` 0, seeds ``min_distance`` apart) or the foreground regions
where the hv maps do not fall (``hv_split`` > 0, HoVer-Net's markers). For each ``--model``
the detection thresholds of each way are chosen on the validation images at the model's scale
exactly as ``sac tune`` does (:func:`sac.training.tune.tune_detection`, best object F1 of its
grid restricted to that way), then the generator alone and SAC (the model's SAM part and
completion, unchanged) are scored on the same validation images at their own size.

Run: ``.venv/bin/python benchmarks/seeding.py --dataset monuseg --model sac-lite-monuseg
--bf16``. Writes ``results/seeding_<dataset>[_<tag>].{json,md}``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from sac.data.open import open_dataset
from sac.data.splits import load_builtin_split
from sac.model import load_model
from sac.training.sampler import load_images
from sac.training.tune import tune_detection

from bench_common import DATASETS, machine_info, validation_parser, write_results
from detection import score

WAYS = {"centre peaks": lambda r: r["hv_split"] == 0, "hv falls": lambda r: r["hv_split"] > 0}


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", action="append", required=True,
                   help="a model with an hv generator (repeat for several)")
    args = p.parse_args()
    started = machine_info()
    fmt, default = DATASETS[args.dataset]
    dataset = open_dataset(args.data or default, fmt)
    names = load_builtin_split(args.dataset).val[: args.limit]
    val = [(n, dataset[n].image, dataset[n].labels) for n in names]
    table: list[dict[str, Any]] = []
    for name in args.model:
        model = load_model(name).eval()
        if not model.generator.config.hv:
            raise SystemExit(f"{name}: its generator has no horizontal/vertical maps "
                             f"(centre target {model.config.centre_target!r})")
        small, _ = load_images(dataset, names, model.config.input_scale)
        tuned = tune_detection(model, small, bf16=args.bf16)
        for way, keep in WAYS.items():
            best = max((r for r in tuned.table if keep(r)), key=lambda r: r["f1_obj"])
            variant = copy.deepcopy(model)
            variant.config = dataclasses.replace(model.config, thresholds=dataclasses.replace(
                model.config.thresholds, fg=best["fg"], centre=best["centre"],
                min_distance=int(best["min_distance"]), hv_split=best["hv_split"]))
            res = score(variant, val, args.bf16)
            row = {"model": name, "seeds": way, "fg": best["fg"],
                   **({"hv_split": best["hv_split"]} if best["hv_split"] else
                      {"centre": best["centre"], "min_distance": best["min_distance"]}),
                   "tune_f1_model_scale": round(best["f1_obj"], 4),
                   **{f"gen_{k}": v for k, v in res["generator_only"].items()},
                   **{f"sac_{k}": v for k, v in res["sac"].items()}}
            table.append(row)
            print(row, flush=True)
            write(table, args, len(val), started)


def write(table: list[dict[str, Any]], args: Any, n_val: int, started: dict[str, Any]) -> None:
    """The result files so far."""
    info = {**started, "rows_written": machine_info()["date"], "dataset": args.dataset,
            "bf16": args.bf16, "val_images": n_val,
            "note": "thresholds of each way chosen on the validation images at the model's "
                    "scale (best detection F1 of sac tune's grid for that way); scores at the "
                    "images' own size; completion from the semantic mask as in the model"}
    columns = ["model", "seeds", "fg", "centre", "min_distance", "hv_split",
               "tune_f1_model_scale", "gen_f1_obj", "gen_aji", "sac_f1_obj", "sac_aji",
               "sac_pixel_dice", "sac_pq", "sac_s_per_image"]
    write_results(f"seeding_{args.dataset}" + (f"_{args.tag}" if args.tag else ""), info,
                  table, columns, f"Seeding study on the {args.dataset} validation split")


if __name__ == "__main__":
    main()
