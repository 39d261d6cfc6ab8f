"""``sac tune``: choose a trained model's detection thresholds on validation images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sac.cli.common import EPILOG, add_precision
from sac.core.checks import option
from sac.core.errors import ConfigError, InputError
from sac.data.open import FORMATS, open_dataset, resolve_split


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``tune`` on the ``sac`` subcommand parser."""
    from sac.training.trainer import SELECT_METRICS
    from sac.training.tune import DEFAULT_SETTINGS, SETTINGS

    p = sub.add_parser(
        "tune", help="choose a model's detection thresholds on validation images",
        description="Grid-search the prompt generator's detection thresholds (foreground, "
        "centre, seed spacing) for the best object F1 of its own detections on a validation "
        "split, then the --settings on the whole pipeline (by default SAM's mask logit "
        "threshold and the generator's foreground below which a mask is dropped), then "
        "whether regions of the semantic mask that no instance covers become nuclei or join "
        "their neighbour (each whole-pipeline step for the best pixel Dice + --metric), and "
        "save the model with them. Use validation images only, never test images.",
        epilog=EPILOG)
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--data", type=Path, required=True, help="dataset folder")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--split", required=True, help="split JSON or built-in name; its val part "
                   "is used")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="write the tuned model to this new folder (default: update --model "
                        "in place, keeping its other files such as MODEL_CARD.md; shipped "
                        "models are read-only and need -o)")
    p.add_argument("--limit", type=option("--limit", 1, integer=True),
                   default=None, help="use N validation images")
    add_precision(p)
    p.add_argument("--no-fill", action="store_true",
                   help="tune only the detection thresholds, not the completion of the "
                   "instance labels from the semantic mask (0 = off, the default)")
    p.add_argument("--metric", choices=SELECT_METRICS, default=None,
                   help="instance metric that, added to pixel Dice, chooses the mask "
                   "threshold, foreground cut and completion (default: the one the model's "
                   "checkpoint was selected by, else aji)")
    p.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=None,
                   metavar="NAME",
                   help="settings chosen on the whole pipeline, in this order whatever the "
                   f"order given: {', '.join(SETTINGS)} (centre, min_distance, fg: the "
                   "detection thresholds again, judged by SAM's masks; min_visible: the share "
                   "of a mask that must stay free of better masks; default: "
                   f"{' '.join(DEFAULT_SETTINGS)})")
    p.add_argument("--no-mask", action="store_true",
                   help="no whole-pipeline settings: keep the model's mask logit threshold "
                   "(SAM's own is 0) and foreground cut (0 = off)")


def run(args: argparse.Namespace) -> int:
    """Load the validation images, tune, save."""
    from sac.core.device import resolve_device, use_bf16
    from sac.model import read_config, resolve_model
    from sac.model.store import is_shipped
    from sac.training.sampler import load_images, require_nuclei
    from sac.training.tune import DEFAULT_SETTINGS, at_own_size, describe, tune_model_folder

    folder = resolve_model(args.model)
    if args.output is None and is_shipped(folder):
        raise ConfigError(f"{args.model} is a model shipped with sac and is read-only; pass "
                          "-o FOLDER to write the tuned copy there")
    if args.output is not None and args.output.exists():
        raise InputError(f"{args.output} already exists; choose a new folder for -o")
    scale = read_config(folder).input_scale
    dataset = open_dataset(args.data, args.format)
    images, problems = load_images(dataset, list(resolve_split(args.split).val), scale,
                                   args.limit)
    for msg in problems:
        print(f"sac tune: skipped {msg}", file=sys.stderr)
    if not images:
        raise InputError("no usable validation images to tune on")
    require_nuclei(images, "validation")
    if args.no_mask and args.settings:
        raise ConfigError("--no-mask tunes no whole-pipeline settings; drop it or --settings")
    settings = () if args.no_mask else tuple(args.settings or DEFAULT_SETTINGS)
    whole = settings or not args.no_fill  # whole-pipeline stages score at own size
    full = at_own_size(dataset, images, scale) if whole else None
    bf16 = use_bf16(args.precision, resolve_device("cpu"))
    s = tune_model_folder(folder, images, args.output, bf16, fill=not args.no_fill,
                          full=full, settings=settings, target=args.metric)
    print(f"{describe(s)}; saved {args.output or folder}")
    return 1 if problems else 0
