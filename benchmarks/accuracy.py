"""Accuracy on a validation split: SAC against baselines, every method on the same images.

Methods (one row each):

* ``sac_instance``: the SAC model's instance labels (one prompt set per detected nucleus);
* ``sac_semantic``: its semantic mask (one prompt set per tile, the paper's output); object
  metrics use the mask's connected components;
* ``classical``: Otsu on the hematoxylin (H&E) or intensity channel + distance watershed, its
  smoothing and seed distance picked by a small grid on training images (never validation);
* ``generator_only``: the nuclei the model's prompt generator detects, without SAM;
* ``sam_zero_shot_boxes``: LiteMedSAM as released (no LoRA, original decoder) prompted with
  boxes around the generator's nuclei (point prompts give nothing before fine-tuning);
* ``sac_true_nuclei``: an upper bound, not a method: the SAC model prompted from the ground
  truth's nuclei instead of the generator's detections, to separate detection errors from mask
  errors;
* one row per ``--ablation NAME=MODEL_DIR`` (other trained models, e.g. no LoRA, no negatives).

Where the split records image types (DSB 2018: fluorescence, histology, brightfield), every
method also gets one row per type.

Run: ``.venv/bin/python benchmarks/accuracy.py --dataset monuseg --model PATH``. Writes
``results/accuracy/accuracy_<dataset>[_<tag>].{json,md}``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from sac.core.images import to_rgb_float
from sac.core.resample import resample_image, resample_labels
from sac.data.open import open_dataset
from sac.data.splits import load_builtin_split
from sac.metrics import aggregate, evaluate_pair
from sac.model import SACModel, create_model, load_model
from sac.modeling import LoRAConfig
from sac.pipeline.classical import classical_instances
from sac.pipeline.nuclei import detect
from sac.pipeline.segmenter import Segmenter

from bench_common import DATASETS, bf16_of, machine_info, validation_parser, write_results

KEYS = ["pixel_dice", "pixel_dice_sum", "pixel_iou", "f1_obj", "aji", "pq", "dsb_score"]


def zero_shot(model: SACModel) -> SACModel:
    """Base LiteMedSAM (no LoRA, released decoder) with ``model``'s generator, box prompts.

    Detection thresholds are the model's; the completion from the semantic mask stays off, as
    the released decoder gives no usable mask from the semantic point set.
    """
    cfg = model.config
    zs = create_model(cfg.backbone, lora=LoRAConfig(rank=0),
                      prompts=dataclasses.replace(cfg.prompts, mode="boxes"),
                      thresholds=cfg.thresholds.without_fill(),
                      decode_window=cfg.decode_window,
                      input_scale=cfg.input_scale, generator_widths=cfg.generator_widths,
                      centre_target=cfg.centre_target)
    zs.generator.load_state_dict(model.generator.state_dict())
    return zs.eval()


def tune_classical(dataset: Any, names: list[str], n: int) -> dict[str, Any]:
    """The classical baseline's ``sigma`` and ``min_distance`` with the best mean AJI on ``n``
    evenly spaced training images, so the baseline is as fair as the trained models."""
    picked = names[:: max(1, len(names) // n)][:n]
    data = [(to_rgb_float(dataset[x].image), dataset[x].labels) for x in picked]
    best: tuple[float, dict[str, Any]] = (-1.0, {})
    for sigma in (1.0, 2.0):
        for min_distance in (3, 4, 6, 8):
            params = {"sigma": sigma, "min_distance": min_distance}
            aji = float(aggregate([evaluate_pair(gt, classical_instances(rgb, **params))
                                   for rgb, gt in data])["aji"])
            if aji > best[0]:
                best = (aji, params)
    print(f"classical baseline: {best[1]} (training AJI {best[0]:.3f} on {len(data)} images)")
    return {**best[1], "train_aji": round(best[0], 4), "train_images": len(data)}


def generator_labels(seg: Segmenter, image: np.ndarray) -> np.ndarray:
    rgb = to_rgb_float(image)
    work = resample_image(rgb, seg.config.input_scale)
    det = detect(seg.generator_maps(work), seg.config.thresholds)
    return resample_labels(det, rgb.shape[:2])


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", required=True, help="SAC model folder or shipped name")
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=MODEL_DIR")
    p.add_argument("--classical-images", type=int, default=12,
                   help="training images on which the classical baseline is tuned")
    args = p.parse_args()
    fmt, default = DATASETS[args.dataset]
    dataset = open_dataset(args.data or default, fmt)
    split = load_builtin_split(args.dataset)
    names = split.val[: args.limit]
    classical = tune_classical(dataset, split.train, args.classical_images)
    model = load_model(args.model)
    segs: dict[str, Segmenter] = {"sac_instance": Segmenter(model, precision=args.precision),
                                  "sam_zero_shot_boxes": Segmenter(zero_shot(model),
                                                                   precision=args.precision)}
    for item in args.ablation:
        name, _, path = item.partition("=")
        segs[name] = Segmenter(load_model(path), precision=args.precision)
    rows: dict[str, list[dict[str, Any]]] = {}
    seconds: dict[str, float] = {}

    def record(method: str, gt: np.ndarray, labels: np.ndarray, t0: float) -> None:
        seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - t0
        rows.setdefault(method, []).append(evaluate_pair(gt, labels))

    for i, name in enumerate(names):
        sample = dataset[name]
        img, gt = sample.image, sample.labels
        t0 = time.perf_counter()
        res = segs["sac_instance"].segment(img, name, semantic=True)
        record("sac_instance", gt, res.labels, t0)
        record("sac_semantic", gt, ndi.label(res.semantic)[0], time.perf_counter())
        t0 = time.perf_counter()
        record("sac_true_nuclei", gt, segs["sac_instance"].segment(img, name, nuclei=gt).labels,
               t0)
        t0 = time.perf_counter()
        params = {k: classical[k] for k in ("sigma", "min_distance")}
        record("classical", gt, classical_instances(to_rgb_float(img), **params), t0)
        t0 = time.perf_counter()
        record("generator_only", gt, generator_labels(segs["sac_instance"], img), t0)
        for method, seg in segs.items():
            if method != "sac_instance":
                t0 = time.perf_counter()
                record(method, gt, seg.segment(img, name).labels, t0)
        print(f"[{i + 1}/{len(names)}] {name}: sac AJI {rows['sac_instance'][-1]['aji']:.3f}, "
              f"classical {rows['classical'][-1]['aji']:.3f}", flush=True)
    types = [split.meta.get("types", {}).get(n, "all") for n in names]
    groups = ["all"] + (sorted(set(types)) if len(set(types)) > 1 else [])
    table = []
    for group in groups:  # all images, then one block per image type (DSB)
        for method, rs in rows.items():
            picked = [r for r, t in zip(rs, types, strict=True) if group in ("all", t)]
            agg = aggregate(picked)
            row: dict[str, Any] = {"method": method, "images": len(picked),
                                   "image_type": group}
            row.update({k: round(float(agg[k]), 4) for k in KEYS})
            row["s_per_image"] = round(seconds[method] / len(rs), 2) if group == "all" else ""
            table.append(row)
    info = machine_info()
    info.update(dataset=args.dataset, split="built-in val", model=str(args.model),
                bf16=bf16_of(args), classical=classical,
                model_training=model.config.training.get("command", ""),
                note="pixel_dice: mean over images; pixel_dice_sum: from summed counts; "
                     "sac_semantic object metrics use connected components")
    name = f"accuracy_{args.dataset}" + (f"_{args.tag}" if args.tag else "")
    _, md = write_results(name, info, table, ["method", "image_type", "images", *KEYS,
                                              "s_per_image"],
                          f"Accuracy on the {args.dataset} validation split")
    print(md.read_text())


if __name__ == "__main__":
    main()
