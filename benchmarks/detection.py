"""Detection study: what the prompt generator's target, capacity and training length do to
detection and to SAC's accuracy, with the SAM part of a trained model held fixed.

The generator decides what SAM is asked about; in the shipped models it is the weaker half
(object F1 with the generator's prompts well below that with the true nuclei). Training the
generator alone is cheap, so each variant here trains a fresh generator from scratch for
``--steps`` standalone steps (:mod:`sac.training.generator_stage`) on the training split at
the model's scale, tunes its detection thresholds on the validation images exactly as ``sac
train`` does (:func:`sac.training.tune.tune_detection`), and is scored twice on the same
validation images: ``generator_only`` (the watershed on its maps) and ``sac`` (the trained
model's LoRA and mask decoder, prompted from this generator; completion as in the model).
The first row is the model as it is. Each variant runs once per ``--seeds`` seed.

Variants are ``NAME=CENTRE:WIDTHS``, e.g. ``distance=distance:16,32,64,128`` (CENTRE is
``gaussian``, ``distance`` or ``hv``).

Run: ``.venv/bin/python benchmarks/detection.py --dataset monuseg --model sac-lite-monuseg
--steps 2000 --seeds 0 1 --bf16``; ``--save DIR`` keeps each variant's model folder (no size
head: ``scripts/fit_size_head.py`` fits one). Writes
``results/detection/detection_<dataset>[_<tag>].{json,md}``.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sac.core.device import resolve_device
from sac.core.images import to_rgb_float
from sac.core.resample import resample_image, resample_labels
from sac.data.open import open_dataset
from sac.data.splits import load_builtin_split
from sac.metrics import aggregate, evaluate_pair
from sac.model import SACModel, load_model
from sac.model.store import save_model
from sac.modeling.generator import GeneratorConfig, PromptGenerator
from sac.pipeline.nuclei import detect
from sac.pipeline.segmenter import Segmenter
from sac.training.augment import AugmentConfig
from sac.training.generator_stage import GeneratorStageConfig, train_generator
from sac.training.sampler import CropSampler, load_images
from sac.training.targets import CENTRE_TARGETS
from sac.training.tune import tune_detection

from bench_common import (
    DATASETS,
    bf16_of,
    machine_info,
    seed_summary,
    validation_parser,
    write_results,
)

KEYS = ["pixel_dice", "f1_obj", "aji", "pq"]
DEFAULT_VARIANTS = ["gaussian=gaussian:16,32,64,128", "distance=distance:16,32,64,128",
                    "distance_wide=distance:32,64,128,256"]


def parse_variant(text: str) -> tuple[str, str, tuple[int, ...]]:
    """``NAME=CENTRE:W1,W2,...`` -> (name, centre target, widths)."""
    name, _, rest = text.partition("=")
    centre, _, widths = rest.partition(":")
    if not name or centre not in CENTRE_TARGETS or not widths:
        raise SystemExit(f"bad --variant {text!r}: expected NAME=CENTRE:W1,W2,... with CENTRE "
                         f"one of {', '.join(CENTRE_TARGETS)}")
    return name, centre, tuple(int(w) for w in widths.split(","))


def with_generator(model: SACModel, generator: PromptGenerator, centre: str) -> SACModel:
    """A copy of ``model`` whose prompt generator (and its config fields) is ``generator``.

    The copy has no size head: the model's was fitted on its own generator's features, and
    read through another generator it gives a meaningless scale (seen: SAC at 240 s per
    image and AJI 0.14 with an hv generator whose maps alone scored AJI 0.56). The automatic
    scale then reads the new generator's foreground map alone."""
    out = copy.deepcopy(model)
    out.generator = generator.to(model.device).eval()
    out.size_head = None
    out.config = dataclasses.replace(model.config, centre_target=centre, size_head=None,
                                     generator_widths=generator.config.widths)
    return out


def score(model: SACModel, val: list[tuple[str, np.ndarray, np.ndarray]], bf16: bool,
          sam: SACModel | None = None, generator_scale: float | None = None
          ) -> dict[str, dict[str, float]]:
    """Per-image means of the generator's detections and SAC's instances against the truth.

    With ``sam`` (and ``generator_scale``, where ``model``'s generator runs), SAC is ``sam``
    prompted with ``model``'s detections (``Segmenter.segment(nuclei=...)``): the detections
    may come from another resolution than SAM's, and SAM's own maps (prompt sets,
    completion) stay those of ``sam``.
    """
    seg = Segmenter(model, precision="bf16" if bf16 else "fp32")
    runner = seg if sam is None else Segmenter(sam, precision="bf16" if bf16 else "fp32")
    at = model.config.input_scale if generator_scale is None else generator_scale
    rows: dict[str, list[dict[str, float]]] = {"generator_only": [], "sac": []}
    t_sac = 0.0
    for name, img, gt in val:
        rgb = to_rgb_float(img)
        t0 = time.perf_counter()
        det = detect(seg.generator_maps(resample_image(rgb, at)), model.config.thresholds)
        det = resample_labels(det, rgb.shape[:2])
        t_det = time.perf_counter() - t0
        rows["generator_only"].append(evaluate_pair(gt, det))
        t0 = time.perf_counter()
        labels = runner.segment(img, name, nuclei=det if sam is not None else None).labels
        t_sac += time.perf_counter() - t0 + (t_det if sam is not None else 0.0)
        rows["sac"].append(evaluate_pair(gt, labels))
    out = {k: {m: round(float(v), 4) for m, v in aggregate(r).items() if m in KEYS}
           for k, r in rows.items()}
    out["sac"]["s_per_image"] = round(t_sac / max(1, len(val)), 2)
    return out


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", default="sac-lite-monuseg")
    p.add_argument("--variant", action="append", default=None, metavar="NAME=CENTRE:WIDTHS")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--generator-scale", type=float, default=None,
                   help="train and run the fresh generators at this scale of the input "
                        "(e.g. 1.0: full resolution for a model whose SAM works at 0.5); SAM "
                        "is then prompted with their detections, its own maps unchanged")
    p.add_argument("--save", type=Path, default=None, metavar="DIR",
                   help="also write each variant's model (the --model with this generator and "
                        "its tuned thresholds, no size head) to DIR/NAME_seedS")
    args = p.parse_args()
    if args.save is not None and args.generator_scale is not None:
        raise SystemExit("--save: a model's generator runs at its SAM's scale; drop "
                         "--generator-scale")
    started = machine_info()  # at the start: the commit whose code runs
    device = resolve_device(args.device)
    fmt, default = DATASETS[args.dataset]
    dataset = open_dataset(args.data or default, fmt)
    split = load_builtin_split(args.dataset)
    base = load_model(args.model).to(device).eval()
    scale = base.config.input_scale if args.generator_scale is None else args.generator_scale
    train, _ = load_images(dataset, split.train, scale)
    val_names = split.val[: args.limit]
    val_small, _ = load_images(dataset, val_names, scale)
    val = [(n, dataset[n].image, dataset[n].labels) for n in val_names]
    augment = AugmentConfig.for_modality(base.config.modality, stain_bias=0.02)
    stage = GeneratorStageConfig(steps=args.steps, bf16=bf16_of(args))
    variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    table: list[dict[str, Any]] = []

    def add(name: str, seed: int | str, res: dict[str, dict[str, float]], extra: dict[str, Any]
            ) -> None:
        row = {"variant": name, "seed": seed, **extra}
        row.update({f"gen_{k}": v for k, v in res["generator_only"].items()})
        row.update({f"sac_{k}": v for k, v in res["sac"].items()})
        table.append(row)
        print(row, flush=True)

    add("model_as_is", "-", score(base, val, bf16_of(args)),
        {"centre": base.config.centre_target, "widths": list(base.config.generator_widths),
         "steps": "-", "train_s": "-"})
    for seed in args.seeds:  # seeds outermost, so a cut-off run still compares the variants
        for name, centre, widths in variants:
            torch.manual_seed(seed)
            gen = PromptGenerator(GeneratorConfig(widths=widths, hv=centre == "hv")).to(device)
            sampler = CropSampler(train, base.spec.image_size, augment)
            t0 = time.perf_counter()
            train_generator(gen, sampler, stage, seed, device, centre=centre)
            train_s = round(time.perf_counter() - t0, 1)
            model = with_generator(base, gen, centre)
            zoom = scale / base.config.input_scale
            if zoom != 1:  # pixel thresholds at the generator's scale (the grid adds them)
                th = base.config.thresholds
                model.config = dataclasses.replace(model.config, thresholds=dataclasses.replace(
                    th, min_distance=round(th.min_distance * zoom),
                    min_area=round(th.min_area * zoom**2)))
            tuned = tune_detection(model, val_small, bf16=bf16_of(args))
            model.config = dataclasses.replace(
                model.config, thresholds=dataclasses.replace(
                    model.config.thresholds, fg=tuned.fg, centre=tuned.centre,
                    min_distance=tuned.min_distance))
            if args.save is not None:  # its card must say the generator was replaced
                record = {"script": "benchmarks/detection.py", "argv": sys.argv[1:],
                          "commit": started["commit"], "centre_target": centre,
                          "widths": list(widths), "steps": args.steps, "seed": seed,
                          "train_seconds": train_s, "thresholds_tuned_on": "validation"}
                save_model(model, args.save / f"{name}_seed{seed}", dtype="float16",
                           training={**base.config.training, "generator_replaced": record})
            sam = None if args.generator_scale is None else base
            add(name, seed, score(model, val, bf16_of(args), sam, args.generator_scale),
                {"centre": centre, "widths": list(widths), "steps": args.steps,
                 "train_s": train_s, "params": sum(q.numel() for q in gen.parameters()),
                 "fg": tuned.fg, "centre_th": tuned.centre, "min_distance": tuned.min_distance})
            write(table, args, len(train), len(val), started)


def write(table: list[dict[str, Any]], args: Any, n_train: int, n_val: int,
          started: dict[str, Any]) -> None:
    """The result files so far: every row, then mean +- half-range per variant."""
    summary = seed_summary(table, ("gen_f1_obj", "gen_aji", "sac_f1_obj", "sac_aji",
                                   "sac_pixel_dice", "sac_pq"))
    info = {**started, "rows_written": machine_info()["date"], "dataset": args.dataset,
            "model": args.model,
            "precision": args.precision, "steps": args.steps, "seeds": args.seeds,
            "generator_scale": args.generator_scale or "the model's",
            "val_images": n_val, "train_images": n_train,
            "note": "generator trained from scratch per row; SAM part (LoRA, decoder) of "
                    "--model fixed; thresholds tuned on the validation images per row; "
                    "spread = half the range over seeds"}
    columns = ["variant", "seed", "runs", "centre", "widths", "steps", "train_s", "fg",
               "centre_th", "min_distance", "gen_f1_obj", "gen_aji", "sac_f1_obj", "sac_aji",
               "sac_pixel_dice", "sac_pq", "sac_s_per_image"]
    write_results(f"detection_{args.dataset}" + (f"_{args.tag}" if args.tag else ""),
                  info, table + summary, columns,
                  f"Detection study on the {args.dataset} validation split")

if __name__ == "__main__":
    main()
