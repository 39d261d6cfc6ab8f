"""``sac tune``: choose a trained model's detection thresholds on validation images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sac.checks import option
from sac.errors import ConfigError, InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``tune`` on the ``sac`` subcommand parser."""
    from sac.cli import EPILOG
    from sac.commands.evaluate import FORMATS

    p = sub.add_parser(
        "tune", help="choose a model's detection thresholds on validation images",
        description="Grid-search the prompt generator's detection thresholds (foreground, "
        "centre, seed spacing) for the best object F1 on a validation split, then whether "
        "regions of the semantic mask that no instance covers become nuclei or join their "
        "neighbour (best pixel Dice + AJI), and save the model with them. Use validation "
        "images only, never test images.", epilog=EPILOG)
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
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--no-fill", action="store_true",
                   help="tune only the detection thresholds, not the completion of the "
                   "instance labels from the semantic mask (0 = off, the default)")


def tune_model_folder(model_dir: str | Path, images: list, output: Path | None,
                      bf16: bool = False, fill: bool = True) -> dict:
    """Tune ``model_dir`` on ``images`` (at its scale) and save it; returns the summary.

    Detection thresholds first; then, with ``fill``, the completion from the semantic mask
    (which runs the whole pipeline once per image).
    """
    from sac.sacmodel import load_model, save_model
    from sac.training.tune import apply_tuning, summary, tune_detection, tune_fill

    model = load_model(model_dir)
    result = tune_detection(model, images, bf16=bf16)
    apply_tuning(model, result)
    filled = tune_fill(model, images, bf16=bf16) if fill else None
    apply_tuning(model, result, filled)
    training = dict(model.config.training)
    if "threshold_tuning" in training:  # keep the record of earlier tunings
        training["earlier_tunings"] = [*training.get("earlier_tunings", []),
                                       training["threshold_tuning"]]
    training["threshold_tuning"] = summary(result, "f1_obj", filled)
    target = output if output is not None else Path(model_dir)
    save_model(model, target, overwrite=output is None, dtype=model.config.dtype,
               training=training)
    return training["threshold_tuning"]


def describe(s: dict) -> str:
    """One line on what tuning changed."""
    line = (f"detection F1 {s['default_score']:.3f} -> {s['score']:.3f} with fg {s['fg']}, "
            f"centre {s['centre']}, min_distance {s['min_distance']}")
    if "fill" in s:
        f = s["fill"]
        line += (f"; completion from the semantic mask (new nuclei >= {f['fill_new_area']} px,"
                 f" attach {f['fill_attach']}): Dice + AJI {f['default_score']:.3f} -> "
                 f"{f['score']:.3f}")
    return line


def run(args: argparse.Namespace) -> int:
    """Load the validation images, tune, save."""
    from sac.commands.evaluate import load_split_arg, open_dataset
    from sac.sacmodel import read_config, resolve_model
    from sac.sacmodel.store import is_shipped
    from sac.training.sampler import load_images

    folder = resolve_model(args.model)
    if args.output is None and is_shipped(folder):
        raise ConfigError(f"{args.model} is a model shipped with sac and is read-only; pass "
                          "-o FOLDER to write the tuned copy there")
    if args.output is not None and args.output.exists():
        raise InputError(f"{args.output} already exists; choose a new folder for -o")
    scale = read_config(folder).input_scale
    dataset = open_dataset(args.data, args.format)
    images, problems = load_images(dataset, list(load_split_arg(args.split).val), scale,
                                   args.limit)
    for msg in problems:
        print(f"sac tune: skipped {msg}", file=sys.stderr)
    if not images:
        raise InputError("no usable validation images to tune on")
    s = tune_model_folder(folder, images, args.output, args.bf16, fill=not args.no_fill)
    print(f"{describe(s)}; saved {args.output or folder}")
    return 1 if problems else 0
