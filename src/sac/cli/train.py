"""``sac train``: fine-tune SAM (LoRA + mask decoder) jointly with the prompt generator."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from sac.cli.common import EPILOG, add_precision
from sac.core.checks import option
from sac.core.errors import ConfigError, InputError
from sac.data.open import FORMATS, dataset_keys, open_training_data

PARTS = ("lora", "mask_decoder", "prompt_encoder", "generator")
MODALITY_OF_FORMAT = {"monuseg": "he", "dsb2018": "any", "folder": "any"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``train`` on the ``sac`` subcommand parser."""
    from sac.model.config import PROMPT_MODES, PROMPT_STRATEGIES, PromptConfig
    from sac.sam.backbones import BACKBONES, DEFAULT_BACKBONE
    from sac.training.trainer import SELECT_METRICS

    p = sub.add_parser(
        "train", help="train a SAC model on labelled images",
        description="Fine-tune SAM with LoRA on the image encoder's query/value projections, "
        "the mask decoder and the auto-prompt generator, jointly, on a labelled dataset. The "
        "best model on the validation images is written to RUN_DIR/model; an interrupted run "
        "continues with --resume.", epilog=EPILOG)
    p.add_argument("--data", type=Path, required=True, action="append",
                   help="training dataset folder; repeat it to train one model on several "
                   "datasets (each source then gets the same share of the training crops)")
    p.add_argument("--format", required=True, choices=FORMATS, action="append",
                   help="dataset layout: once for all --data folders, or once per folder")
    p.add_argument("--split", default=None, action="append",
                   help="split JSON or built-in name (monuseg, dsb2018); its train part "
                   "trains, its val part validates; once for all --data folders or once per "
                   "folder. Default: a deterministic 10%% of the images validate")
    p.add_argument("-o", "--output", type=Path, required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="start over in a non-empty folder")
    g = p.add_argument_group("model")
    g.add_argument("--init", default=None, metavar="MODEL",
                   help="start from a trained SAC model (folder or shipped name, e.g. "
                        "sac-lite-monuseg) instead of the base SAM: fine-tune it on your "
                        "data. Its architecture, prompt settings, thresholds and input scale "
                        "are kept (--backbone, --lora-*, --prompt-mode/-strategy, the "
                        "negatives, --semantic-points, --decode-window and --centre-target "
                        "cannot be given with it); it trains its own parts plus --train-parts")
    g.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=sorted(BACKBONES))
    g.add_argument("--sam-checkpoint", type=Path, default=None, help="base SAM checkpoint")
    g.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    g.add_argument("--lora-rank", type=option("--lora-rank", 0, 256, integer=True),
                   default=4, help="0 = no LoRA (default 4)")
    g.add_argument("--lora-alpha", type=option("--lora-alpha", 0, 1e4, lo_open=True),
                   default=None, help="default: the rank")
    g.add_argument("--lora-blocks", default=None,
                   help="comma-separated attention blocks with LoRA (default: all)")
    g.add_argument("--train-parts", default="mask_decoder,generator",
                   help=f"parts trained besides LoRA, from {', '.join(PARTS[1:])} "
                        "(default: mask_decoder,generator)")
    g.add_argument("--prompt-mode", choices=PROMPT_MODES, default="points")
    g.add_argument("--prompt-strategy", choices=PROMPT_STRATEGIES, default="centroid")
    g.add_argument("--neighbour-negatives",
                   type=option("--neighbour-negatives", 0, 64, integer=True),
                   default=PromptConfig.neighbour_negatives,
                   help="negative points at touching nuclei in each nucleus's prompt (default "
                        f"{PromptConfig.neighbour_negatives}: models trained without "
                        "negatives scored higher, see the README)")
    g.add_argument("--background-negatives",
                   type=option("--background-negatives", 0, 64, integer=True),
                   default=PromptConfig.background_negatives,
                   help="negative points on confident background in each nucleus's prompt "
                        f"(default {PromptConfig.background_negatives})")
    g.add_argument("--semantic-points", type=option("--semantic-points", 1, 4096, integer=True),
                   default=64,
                   help="most prompts in a tile's semantic prompt set")
    g.add_argument("--decode-window", type=option("--decode-window", 4, 64, integer=True),
                   default=16,
                   help="embedding tokens per side decoded around each nucleus; windows grow "
                        "for larger nuclei (default 16)")
    g.add_argument("--scale", type=option("--scale", 0.05, 20), default=None,
                   help="resample the training images by this factor (default 1, or the "
                        "--init model's input scale)")
    g.add_argument("--pixel-size", type=option("--pixel-size", 0, 100, lo_open=True), default=None,
                   help="micrometres per pixel of the training images (recorded in the model; "
                        "with --init at its input scale, default the model's)")
    g.add_argument("--modality", choices=("he", "fluorescence", "any"), default=None,
                   help="image type; he turns on stain augmentation (default from --format, "
                        "or the --init model's where the format does not say)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=option("--epochs", 1, integer=True), default=10)
    o.add_argument("--steps-per-epoch", type=option("--steps-per-epoch", 1, integer=True),
                   default=None,
                   help="default: crops covering the training images once")
    o.add_argument("--batch-size", type=option("--batch-size", 1, 1024, integer=True),
                   default=2, help="crops per step (default 2)")
    o.add_argument("--generator-batch", type=option("--generator-batch", 1, 1024, integer=True),
                   default=8,
                   help="crops per step for the prompt generator (default 8; the first "
                        "--batch-size of them also train SAM)")
    o.add_argument("--prompts-per-crop", type=option("--prompts-per-crop", 1, 1024, integer=True),
                   default=16)
    o.add_argument("--generator-prompt-prob", type=option("--generator-prompt-prob", 0, 1),
                   default=0.5,
                   help="share of crops prompted from the generator instead of the truth")
    o.add_argument("--augment", choices=("basic", "robust"), default="basic",
                   help="basic: flips, rotations, intensity (and stain jitter for H&E); "
                        "robust adds blur, noise, JPEG, +-25%% magnification, grey and "
                        "(for fluorescence and mixed data) inverted-contrast crops; with several "
                        "--data each dataset gets its own (default basic)")
    o.add_argument("--sparse-crops", type=option("--sparse-crops", 0, 1), default=0.15,
                   help="share of training crops taken where the images have the fewest "
                        "nuclei (stroma, lumen, background), default %(default)s")
    o.add_argument("--synthetic-negatives", type=option("--synthetic-negatives", 0, 1),
                   default=0.1, help="share of training crops of synthetic nucleus-free "
                   "tissue (fat, fibres, glass with dust) in the training images' own "
                   "colours, default %(default)s (0 with --sparse-crops 0: only crops with "
                   "nuclei, the sampling of earlier SAC models); half of both kinds are "
                   "min-max stretched as an image holding only such tissue would be")
    o.add_argument("--hard-negatives", type=option("--hard-negatives", 0, 1), default=0.0,
                   help="share of training crops centred on the model's own false "
                        "detections, mined on the training images after each epoch "
                        "(default %(default)s: off)")
    o.add_argument("--generator-steps", type=option("--generator-steps", 0, integer=True),
                   default=0,
                   help="steps of standalone generator training before the joint stage "
                        "(cheap: about 0.1 of a joint step each; default 0)")
    o.add_argument("--centre-target", choices=("gaussian", "distance", "hv"),
                   default="gaussian",
                   help="what the generator's centre map learns: a Gaussian blob per nucleus, "
                        "each nucleus's normalised distance to its edge, or HoVer-Net's "
                        "horizontal and vertical offset maps (default gaussian)")
    o.add_argument("--lr", type=option("--lr", 0, 1, lo_open=True), default=3e-4)
    o.add_argument("--generator-lr", type=option("--generator-lr", 0, 1, lo_open=True),
                   default=2e-3)
    o.add_argument("--seed", type=option("--seed", 0, 2**32 - 1, integer=True), default=0)
    o.add_argument("--select-metric", choices=SELECT_METRICS, default="aji")
    o.add_argument("--limit", type=option("--limit", 1, integer=True),
                   default=None, help="use only N training images")
    o.add_argument("--val-limit", type=option("--val-limit", 1, integer=True),
                   default=None, help="validate on N images only")
    o.add_argument("--device", default="cpu")
    add_precision(o)
    o.add_argument("--no-tune", action="store_true",
                   help="keep the default detection thresholds instead of choosing them on "
                        "the validation images after training (see sac tune)")
    o.add_argument("--no-size-head", action="store_true",
                   help="do not fit the size head that lets sac segment estimate each "
                        "image's nucleus size (fitting takes a few minutes on CPU)")
    o.add_argument("--no-fill", action="store_true",
                   help="tune only the detection thresholds, leaving the completion from the "
                        "semantic mask off")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.add_argument("--nproc", type=option("--nproc", 1, 1024, integer=True), default=1,
                   help="data-parallel processes on this machine (runs torchrun; each takes "
                        "--batch-size crops per step, so the effective batch is N times "
                        "larger). For several machines start torchrun yourself: torchrun "
                        "--nnodes M --nproc-per-node N --rdzv-endpoint HOST:PORT -m sac "
                        "train ...")


# model options an --init model fixes (its trained weights depend on them)
FIXED_BY_INIT = ("--backbone", "--tiny", "--lora-rank", "--lora-alpha", "--lora-blocks",
                 "--prompt-mode", "--prompt-strategy", "--neighbour-negatives",
                 "--background-negatives", "--semantic-points", "--decode-window",
                 "--centre-target")


def _check_init(argv: list[str]) -> None:
    """``--init`` with an option that would change the loaded model's architecture: refuse."""
    flags = {a.split("=")[0] for a in argv if a.startswith("--") and len(a) > 2}
    given = sorted({f for f in FIXED_BY_INIT for a in flags if f.startswith(a)})  # abbreviated
    if given:
        raise ConfigError(f"--init: {', '.join(given)} cannot be given with it (the model's "
                          "weights were trained with its own settings, which sac train keeps)")


def _parts(value: str, rank: int, fresh: bool = True) -> tuple[str, ...]:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS[1:]]
    if bad:
        raise ConfigError(f"--train-parts: unknown part(s) {bad}; choose from {PARTS[1:]}")
    if fresh and "generator" not in parts:
        raise ConfigError("--train-parts must include generator (it has no pretrained weights)")
    return (("lora",) if rank > 0 else ()) + tuple(p for p in PARTS[1:] if p in parts)


def _torchrun(args: argparse.Namespace) -> int:
    """``--nproc N``: run this same command under torchrun with N local processes."""
    import subprocess

    argv, skip = [], False
    for a in args.argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            argv.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={args.nproc}", "-m", "sac", *argv]
    return subprocess.run(cmd, check=False).returncode


def run(args: argparse.Namespace) -> int:
    """Build the model and data, train, and report where the best model went."""
    from sac.training.distributed import launched

    if args.nproc > 1 and not launched():
        return _torchrun(args)
    return _train(args)


def _train(args: argparse.Namespace) -> int:
    """Train in this process (one of several under torchrun, or alone)."""
    import torch

    from sac.core.device import resolve_device, use_bf16
    from sac.model import PromptConfig, create_model, load_for_training
    from sac.modeling import LoRAConfig
    from sac.pipeline.size import training_size
    from sac.training.augment import AugmentConfig
    from sac.training.distributed import init_distributed, local_device
    from sac.training.generator_stage import GeneratorStageConfig
    from sac.training.negatives import NegativeConfig
    from sac.training.sampler import load_images, require_nuclei
    from sac.training.step import StepConfig
    from sac.training.trainer import TrainConfig, Trainer

    init = None
    if args.init is not None:
        from sac.model import read_config, resolve_model

        _check_init(args.argv)
        init = read_config(resolve_model(args.init))
    scale = args.scale if args.scale is not None else init.input_scale if init else 1.0
    args.device = local_device(args.device)
    sync = init_distributed(resolve_device(args.device))
    bf16 = use_bf16(args.precision, resolve_device(args.device))
    if not sync.main:
        args.quiet = True
    kinds = {MODALITY_OF_FORMAT[f] for f in args.format}
    modality = args.modality or (kinds.pop() if len(kinds) == 1 else "any")
    if args.modality is None and modality == "any" and init is not None:
        modality = init.modality  # a folder of images like the --init model's
    blocks = None if args.lora_blocks is None else tuple(
        int(b) for b in args.lora_blocks.split(",") if b.strip())
    lora = LoRAConfig(args.lora_rank, args.lora_alpha or float(max(args.lora_rank, 1)), blocks)
    prompts = PromptConfig(args.prompt_mode, args.prompt_strategy, args.neighbour_negatives,
                           args.background_negatives, args.semantic_points)
    dataset, train_names, val_names = open_training_data(args.data, args.format,
                                                         args.split or [None], args.seed)
    augment = AugmentConfig.robust if args.augment == "robust" else AugmentConfig.for_modality
    formats = args.format * len(args.data) if len(args.format) == 1 else args.format
    # mixed data: each dataset augmented for its own image type (stain jitter for H&E)
    by_source = {} if args.modality or len(args.data) == 1 else {
        key: augment(MODALITY_OF_FORMAT[f], stain_bias=0.02)
        for key, f in zip(dataset_keys(formats), formats, strict=True)}
    cfg = TrainConfig(
        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
        generator_batch=args.generator_batch,
        lr=args.lr, generator_lr=args.generator_lr, seed=args.seed,
        select_metric=args.select_metric, val_limit=args.val_limit,
        step=StepConfig(prompts_per_crop=args.prompts_per_crop,
                        generator_prompt_prob=args.generator_prompt_prob, bf16=bf16),
        augment=augment(modality, stain_bias=0.02), source_augment=by_source,
        negatives=NegativeConfig(args.sparse_crops, args.synthetic_negatives,
                                 hard=args.hard_negatives),
        generator_stage=GeneratorStageConfig(steps=args.generator_steps,
                                             batch_size=args.generator_batch,
                                             lr=args.generator_lr, bf16=bf16),
    )
    train, problems = load_images(dataset, train_names, scale, args.limit)
    val, val_problems = load_images(dataset, val_names, scale, args.val_limit)
    for msg in problems + val_problems:
        print(f"sac train: skipped {msg}", file=sys.stderr)
    if not train:
        raise InputError(f"the training set is empty: no usable image/label pairs in "
                         f"{args.data} ({len(problems)} problem(s) listed above)")
    require_nuclei(train, "training")
    require_nuclei(val, "validation")
    torch.manual_seed(args.seed)
    pixel = None if args.pixel_size is None else args.pixel_size / scale
    if pixel is None and init is not None and scale == init.input_scale:
        pixel = init.pixel_size_um  # same input scale: the model's pixel size still holds
    diameter, diameter_range = training_size([im.labels for im in train])
    data = {"input_scale": scale, "pixel_size_um": pixel, "modality": modality,
            "nucleus_diameter": diameter, "nucleus_diameter_range": diameter_range}
    if init is not None:
        model = load_for_training(args.init, _parts(args.train_parts, 0, False), args.device,
                                  args.sam_checkpoint, **data)
    else:
        model = create_model(args.backbone, args.sam_checkpoint, tiny=args.tiny, lora=lora,
                             prompts=prompts, parts=_parts(args.train_parts, args.lora_rank),
                             device=args.device, decode_window=args.decode_window,
                             centre_target=args.centre_target, **data)
    one = len(args.data) == 1
    summary = {"data": str(args.data[0]) if one else [str(d) for d in args.data],
               "format": args.format[0] if len(args.format) == 1 else args.format,
               "split": args.split[0] if args.split and len(args.split) == 1 else args.split,
               "train_images": len(train), "val_images": len(val),
               **({"init": str(args.init)} if init is not None else {}),
               "skipped": problems + val_problems}
    trainer = Trainer(model, train, val, args.output, cfg, summary, sync)
    if sync.main:
        procs = f" in each of {sync.world} processes" if sync.world > 1 else ""
        print(f"training on {len(train)} images, validating on {len(val)}; "
              f"{trainer.total_steps} steps of {cfg.batch_size} crops{procs}", file=sys.stderr)
    command = "sac " + " ".join(shlex.quote(a) for a in args.argv)
    result = trainer.run(resume=args.resume, overwrite=args.overwrite,
                         progress=not args.quiet, command=command)
    if not sync.main:
        return 0
    if val and not args.no_tune:
        from sac.training.tune import at_own_size, describe, tune_model_folder

        full = None if args.no_fill else at_own_size(dataset, val, scale)
        s = tune_model_folder(result.model_dir, val, None, bf16, fill=not args.no_fill,
                              full=full)
        print(f"tuned on the validation images: {describe(s)}", file=sys.stderr)
    if diameter is not None and not args.no_size_head:
        from sac.training.size_fit import add_size_head

        try:
            rec = add_size_head(result.model_dir, dataset, train_names, val_names)
        except ValueError as exc:  # too few usable images: the model works without one
            print(f"sac train: no size head ({exc}); the foreground map alone will estimate "
                  "nucleus sizes", file=sys.stderr)
        else:
            print(f"size head fitted on {rec['train_views']} views of {rec['train_images']} "
                  f"training images: {rec.get('val', rec['train'])}", file=sys.stderr)
    best = "n/a (no validation images)" if result.best_metric is None else \
        f"{cfg.select_metric} {result.best_metric:.4f} at epoch {result.best_epoch}"
    print(f"done in {result.wall_time_s / 60:.1f} min: best {best}\nmodel: {result.model_dir}")
    return 1 if problems or val_problems else 0
