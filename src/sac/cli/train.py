"""``sac train``: fine-tune SAM (LoRA + mask decoder) jointly with the prompt generator."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from sac.cli.common import EPILOG, add_precision
from sac.core.checks import option
from sac.data.open import FORMATS
from sac.training.run import FEW_SHOT, FEW_SHOT_MAX_IMAGES, TrainOptions, run_training


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``train`` on the ``sac`` subcommand parser."""
    from sac.model.config import PARTS, PROMPT_MODES, PROMPT_STRATEGIES, PromptConfig
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
                   "datasets (each source then gets the same share of the training crops, "
                   "or its --share)")
    p.add_argument("--format", required=True, choices=FORMATS, action="append",
                   help="dataset layout: once for all --data folders, or once per folder")
    p.add_argument("--split", default=None, action="append",
                   help="split JSON or built-in name (monuseg, dsb2018); its train part "
                   "trains, its val part validates; once for all --data folders or once per "
                   "folder. Default: a deterministic 10%% of the images validate")
    p.add_argument("--share", type=float, default=None, action="append", metavar="WEIGHT",
                   help="with several --data: each folder's weight in the training crops, "
                   "once per folder in the same order (e.g. --share 2 --share 1 --share 1 "
                   "gives the first half of the crops). Default: equal")
    p.add_argument("-o", "--output", type=Path, required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="start over in a non-empty folder")
    g = p.add_argument_group("model")
    g.add_argument("--from", "--init", dest="init", default=None, metavar="MODEL",
                   help="start from a trained SAC model (folder or shipped name, e.g. "
                        "sac-lite-nuclei) instead of the base SAM: fine-tune it on your "
                        "data. Its architecture, prompt settings, thresholds and input scale "
                        "are kept (--backbone, --lora-*, --prompt-mode/-strategy, the "
                        "negatives, --semantic-points, --decode-window and --centre-target "
                        "cannot be given with it); it trains its own parts plus --train-parts. "
                        f"On at most {FEW_SHOT_MAX_IMAGES} images, without --epochs or "
                        f"--steps-per-epoch, it runs the few-shot schedule ({FEW_SHOT.epochs} "
                        f"epochs of {FEW_SHOT.steps_per_epoch} steps, minutes on a laptop) "
                        "on all the images, tunes the thresholds on them, and the new model "
                        "keeps its scale for every image (no automatic scale)")
    g.add_argument("--backbone", default=None, choices=sorted(BACKBONES),
                   help=f"default {DEFAULT_BACKBONE}")
    g.add_argument("--sam-checkpoint", type=Path, default=None, help="base SAM checkpoint")
    g.add_argument("--tiny", action="store_const", const=True, default=None,
                   help=argparse.SUPPRESS)  # tests only
    g.add_argument("--lora-rank", type=option("--lora-rank", 0, 256, integer=True),
                   default=None, help="0 = no LoRA (default 4)")
    g.add_argument("--lora-alpha", type=option("--lora-alpha", 0, 1e4, lo_open=True),
                   default=None, help="default: the rank")
    g.add_argument("--lora-blocks", default=None,
                   help="comma-separated attention blocks with LoRA (default: all)")
    g.add_argument("--train-parts", default=TrainOptions.train_parts,
                   help=f"parts trained besides LoRA, from {', '.join(PARTS[1:])} "
                        "(default: %(default)s)")
    g.add_argument("--prompt-mode", choices=PROMPT_MODES, default=None,
                   help=f"default {PromptConfig.mode}")
    g.add_argument("--prompt-strategy", choices=PROMPT_STRATEGIES, default=None,
                   help=f"default {PromptConfig.strategy}")
    g.add_argument("--neighbour-negatives",
                   type=option("--neighbour-negatives", 0, 64, integer=True), default=None,
                   help="negative points at touching nuclei in each nucleus's prompt (default "
                        f"{PromptConfig.neighbour_negatives}: models trained without "
                        "negatives scored higher, see docs/studies.md)")
    g.add_argument("--background-negatives",
                   type=option("--background-negatives", 0, 64, integer=True), default=None,
                   help="negative points on confident background in each nucleus's prompt "
                        f"(default {PromptConfig.background_negatives})")
    g.add_argument("--semantic-points", type=option("--semantic-points", 1, 4096, integer=True),
                   default=None, help="most prompts in a tile's semantic prompt set "
                   f"(default {PromptConfig.semantic_points})")
    g.add_argument("--decode-window", type=option("--decode-window", 4, 64, integer=True),
                   default=None,
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
    o.add_argument("--epochs", type=option("--epochs", 1, integer=True), default=None,
                   help="default 10 (or the few-shot schedule, see --from)")
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
                   default=None,
                   help="what the generator's centre map learns: a Gaussian blob per nucleus, "
                        "each nucleus's normalised distance to its edge, or HoVer-Net's "
                        "horizontal and vertical offset maps (default gaussian; fixed by --from)")
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
    o.add_argument("--no-tune", dest="tune", action="store_false",
                   help="keep the default detection thresholds instead of choosing them on "
                        "the validation images after training (see sac tune)")
    o.add_argument("--no-size-head", dest="size_head", action="store_const", const=False,
                   default=None,
                   help="do not fit the size head that lets sac segment estimate each "
                        "image's nucleus size (fitting takes a few minutes on CPU; the "
                        "few-shot schedule never fits one)")
    o.add_argument("--no-fill", dest="fill", action="store_false",
                   help="tune only the detection thresholds, leaving the completion from the "
                        "semantic mask off")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.add_argument("--nproc", type=option("--nproc", 1, 1024, integer=True), default=1,
                   help="data-parallel processes on this machine (runs torchrun; each takes "
                        "--batch-size crops per step, so the effective batch is N times "
                        "larger). For several machines start torchrun yourself: torchrun "
                        "--nnodes M --nproc-per-node N --rdzv-endpoint HOST:PORT -m sac "
                        "train ...")


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
    """Train in this process (one of several under torchrun, or alone) and report."""
    from sac.training.distributed import launched

    names = {f.name for f in fields(TrainOptions)} - {"command", "data", "format", "split",
                                                      "share"}
    opts = TrainOptions(data=tuple(args.data), format=tuple(args.format),
                        split=tuple(args.split or [None]), share=tuple(args.share or ()),
                        command="sac " + " ".join(shlex.quote(a) for a in args.argv),
                        **{n: getattr(args, n) for n in names})
    result = run_training(opts, lambda msg: print(msg, file=sys.stderr))
    if launched() and int(os.environ.get("RANK", "0")) > 0:
        return 0
    best = "n/a (no validation images)" if result.best_metric is None else \
        f"{opts.select_metric} {result.best_metric:.4f} at epoch {result.best_epoch}"
    print(f"done in {result.wall_time_s / 60:.1f} min: best {best}\nmodel: {result.model_dir}")
    return 1 if result.skipped else 0
