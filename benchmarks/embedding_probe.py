"""Embedding probe: does reading SAM's image embedding make the prompt generator detect better?

The SAC paper's prompt generator reads SAM's image embedding; ours reads the image alone, and
detection is what limits SAC on MoNuSeg (object F1 0.76 with its own prompts against 0.91
with the true nuclei). Putting the encoder into the generator's training is costly on a CPU
(one encoder pass per crop and step), so this probe asks the question cheaply first:

* fixed crops of the model's input size (``--crop-stride`` apart) of every training image at
  the model's scale, each in ``--views`` flips (and transposes with 8), are embedded once by
  ``--model``'s LoRA-adapted encoder, the encoder the generator would read at inference;
* two generators are trained from scratch on exactly the same crops, batches and schedule,
  one reading the embedding (``embed_chans``, :mod:`sac.modeling.generator`) and one not;
* each is scored as ``generator_only`` is in ``accuracy.py``: the watershed on its maps, with
  detection thresholds tuned on the validation images (:func:`sac.training.tune.
  tune_detection_maps`), against the full-resolution truth. Both see the validation images in
  the SAM tiles of the pipeline (model input size, 64 px overlap).

The row ``model_as_is`` is ``--model``'s own generator in the same tiles, for reference: it was
trained on random, colour-augmented crops, so only the two probe rows compare like with like.
The embedding costs nothing extra at inference (SAM embeds every tile anyway), but the
pipeline would have to run the encoder before the generator.

Run: ``.venv/bin/python benchmarks/embedding_probe.py --dataset monuseg --model
sac-lite-monuseg --steps 1500 --seeds 0 --bf16``. Writes
``results/embedding_probe/embedding_probe_<dataset>[_<tag>].{json,md}``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch

from sac.core.device import autocast_context, resolve_device
from sac.core.resample import resample_labels
from sac.core.tiles import make_tiles, owned_tiles, stitch
from sac.data.open import open_dataset
from sac.data.splits import load_builtin_split
from sac.metrics import aggregate, evaluate_pair
from sac.model import SACModel, load_model
from sac.modeling.generator import GeneratorConfig, PromptGenerator, map_probabilities
from sac.pipeline.maps import Maps
from sac.pipeline.nuclei import detect
from sac.sam.transforms import prepare_batch
from sac.training.augment import dihedral
from sac.training.generator_stage import GeneratorStageConfig, warmup_cosine
from sac.training.losses import generator_loss
from sac.training.sampler import TrainImage, load_images
from sac.training.targets import generator_targets
from sac.training.tune import tune_detection_maps

from bench_common import (
    DATASETS,
    bf16_of,
    machine_info,
    seed_summary,
    validation_parser,
    write_results,
)

KEYS = ("f1_obj", "aji", "pq", "pixel_dice")
OVERLAP = 64  # px between validation tiles, as the pipeline's SAM tiles


#: (quarter turns, left-right flip) of each view: the crop, its left-right, up-down and both
#: flips, then the four transforms that transpose it
VIEWS = ((0, False), (0, True), (2, True), (2, False), (1, False), (1, True), (3, False),
         (3, True))


@torch.no_grad()
def embed(model: SACModel, rgbs: list[np.ndarray], bf16: bool, batch: int = 8) -> torch.Tensor:
    """float16 (N, C, g, g) embeddings of (h, w, 3) crops no larger than the model input
    (padded as the pipeline pads its tiles)."""
    out = []
    for i in range(0, len(rgbs), batch):
        pixels, _ = prepare_batch(rgbs[i:i + batch], model.spec.image_size,
                                  model.spec.normalization, upscale=False)
        with autocast_context(model.device, bf16):
            out.append(model.sam.encode(pixels.to(model.device)).half().cpu())
    return torch.cat(out)


@dataclasses.dataclass
class CropSet:
    """Fixed training crops: images, generator targets, valid masks and embeddings."""

    x: torch.Tensor  # (N, 3, S, S) float32 in [0, 1]
    targets: torch.Tensor  # (N, 4, S, S)
    valid: torch.Tensor  # (N, S, S) bool
    emb: torch.Tensor  # (N, C, g, g) float16


def crop_set(model: SACModel, images: list[TrainImage], stride: int, views: int, bf16: bool
             ) -> CropSet:
    s = model.spec.image_size
    xs, tg, va, rgbs = [], [], [], []
    for im in images:
        for t in make_tiles(im.labels.shape, s, max(0, s - stride)):
            ys, xs_ = t.slices(im.labels.shape)
            h, w = ys.stop - ys.start, xs_.stop - xs_.start
            rgb = np.zeros((s, s, 3), np.float32)
            lab = np.zeros((s, s), im.labels.dtype)
            ok = np.zeros((s, s), bool)
            rgb[:h, :w], lab[:h, :w], ok[:h, :w] = im.rgb[ys, xs_], im.labels[ys, xs_], True
            for turns, flip in VIEWS[:views]:
                r, lb, v = dihedral(rgb, lab, turns, flip, ok)
                rgbs.append(r)
                xs.append(torch.from_numpy(r).permute(2, 0, 1))
                tg.append(torch.from_numpy(generator_targets(lb, centre="hv")))
                va.append(torch.from_numpy(v))
    # the embedding of the whole padded crop: a view of a border crop moves its padding, and
    # the encoder sees it where the view put it
    return CropSet(torch.stack(xs), torch.stack(tg), torch.stack(va), embed(model, rgbs, bf16))


def train(gen: PromptGenerator, crops: CropSet, stage: GeneratorStageConfig, seed: int,
          device: torch.device) -> float:
    """Train ``gen`` on batches drawn from ``crops`` by ``seed``; returns seconds taken."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(gen.parameters(), lr=stage.lr, weight_decay=stage.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(stage.warmup_steps,
                                                                 stage.steps))
    reads = gen.config.embed_chans > 0
    gen.train()
    t0 = time.perf_counter()
    for _ in range(stage.steps):
        idx = torch.from_numpy(rng.choice(len(crops.x), stage.batch_size, replace=False))
        with autocast_context(device, stage.bf16):
            logits = gen(crops.x[idx].to(device),
                         crops.emb[idx].float().to(device) if reads else None)
        loss = generator_loss(logits.float(), crops.targets[idx].to(device),
                              crops.valid[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(gen.parameters(), stage.grad_clip)
        opt.step()
        sched.step()
    gen.eval()
    return time.perf_counter() - t0


@torch.no_grad()
def tile_maps(gen: PromptGenerator, model: SACModel, rgb: np.ndarray, bf16: bool) -> Maps:
    """The generator's maps of an image at the model's scale, in the pipeline's SAM tiles."""
    s, shape = model.spec.image_size, rgb.shape[:2]
    parts = []
    for owned in owned_tiles(shape, s, OVERLAP):
        ys, xs = owned.tile.slices(shape)
        crop = rgb[ys, xs]
        e = embed(model, [crop], bf16).float() if gen.config.embed_chans else None
        x = torch.zeros(1, 3, s, s)
        x[0, :, : crop.shape[0], : crop.shape[1]] = torch.from_numpy(crop).permute(2, 0, 1)
        with autocast_context(model.device, bf16):
            logits = gen(x.to(model.device), None if e is None else e.to(model.device))
        probs = map_probabilities(logits.float(), gen.config.hv)[0].cpu().numpy()
        parts.append((owned, probs))
    fg, boundary, centre = stitch(iter(parts), (3, *shape))
    return Maps(fg, boundary, centre)


def score(gen: PromptGenerator, model: SACModel, val_small: list[TrainImage],
          truth: list[np.ndarray], bf16: bool) -> dict[str, Any]:
    """Tune the detection thresholds on the validation maps, then score at full size."""
    t0 = time.perf_counter()
    maps = [tile_maps(gen, model, im.rgb, bf16) for im in val_small]
    seconds = (time.perf_counter() - t0) / max(1, len(val_small))
    tuned = tune_detection_maps(maps, val_small, model.config.thresholds)
    th = dataclasses.replace(model.config.thresholds, fg=tuned.fg, centre=tuned.centre,
                             min_distance=tuned.min_distance)
    rows = [evaluate_pair(gt, resample_labels(detect(m, th), gt.shape))
            for m, gt in zip(maps, truth, strict=True)]
    agg = aggregate(rows)
    out: dict[str, Any] = {f"gen_{k}": round(float(agg[k]), 4) for k in KEYS}
    out.update(fg=tuned.fg, centre_th=tuned.centre, min_distance=tuned.min_distance,
               s_per_image=round(seconds, 2))
    return out


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", default="sac-lite-monuseg")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--views", type=int, choices=(1, 2, 4, 8), default=4)
    p.add_argument("--crop-stride", type=int, default=128)
    p.add_argument("--train-limit", type=int, default=None, help="first N training images")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    started = machine_info()
    device = resolve_device(args.device)
    fmt, default = DATASETS[args.dataset]
    dataset = open_dataset(args.data or default, fmt)
    split = load_builtin_split(args.dataset)
    model = load_model(args.model).to(device).eval()
    if model.config.centre_target != "hv":
        raise SystemExit(f"{args.model}: the probe trains hv generators; pick an hv model")
    scale = model.config.input_scale
    train_images, _ = load_images(dataset, split.train[: args.train_limit], scale)
    val_names = split.val[: args.limit]
    val_small, _ = load_images(dataset, val_names, scale)
    truth = [dataset[n].labels for n in val_names]
    t0 = time.perf_counter()
    crops = crop_set(model, train_images, args.crop_stride, args.views, bf16_of(args))
    embed_s = round(time.perf_counter() - t0, 1)
    print(f"{len(crops.x)} crops embedded in {embed_s} s", flush=True)
    stage = GeneratorStageConfig(steps=args.steps, bf16=bf16_of(args))
    table: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        table.append(row)
        print(row, flush=True)
        write(table, args, started, len(train_images), len(val_names), len(crops.x), embed_s)

    add({"variant": "model_as_is", "seed": "-", "embedding": False,
         **score(model.generator, model, val_small, truth, bf16_of(args))})
    widths = tuple(model.generator.config.widths)
    for seed in args.seeds:
        for name, chans in (("image_only", 0), ("image_and_embedding", int(crops.emb.shape[1]))):
            torch.manual_seed(seed)
            gen = PromptGenerator(GeneratorConfig(widths=widths, hv=True, embed_chans=chans))
            train_s = train(gen.to(device), crops, stage, seed, device)
            add({"variant": name, "seed": seed, "embedding": chans > 0, "steps": args.steps,
                 "train_s": round(train_s, 1), "params": sum(q.numel() for q in
                                                             gen.parameters()),
                 **score(gen, model, val_small, truth, bf16_of(args))})


def write(table: list[dict[str, Any]], args: Any, started: dict[str, Any], n_train: int,
          n_val: int, n_crops: int, embed_s: float) -> None:
    """The result files so far: every row, then mean +- half-range per variant."""
    summary = seed_summary([r for r in table if r["seed"] != "-"], [f"gen_{k}" for k in KEYS])
    info = {**started, "rows_written": machine_info()["date"], "dataset": args.dataset,
            "model": args.model, "precision": args.precision, "steps": args.steps,
            "seeds": args.seeds,
            "views": args.views, "crop_stride": args.crop_stride, "train_images": n_train,
            "train_crops": n_crops, "embedding_seconds": embed_s, "val_images": n_val,
            "note": "both probe generators from scratch on the same fixed crops and batches; "
                    "thresholds tuned on the validation images per row; s_per_image: "
                    "generator maps (and, reading it, the embedding) per validation image; "
                    "spread = half the range over seeds"}
    columns = ["variant", "seed", "runs", "embedding", "steps", "train_s", "params", "fg",
               "centre_th", "min_distance", "gen_f1_obj", "gen_aji", "gen_pq",
               "gen_pixel_dice", "s_per_image"]
    write_results(f"embedding_probe_{args.dataset}" + (f"_{args.tag}" if args.tag else ""),
                  info, table + summary, columns,
                  f"Embedding probe on the {args.dataset} validation split")


if __name__ == "__main__":
    main()
