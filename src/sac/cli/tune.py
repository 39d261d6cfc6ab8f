"""``sac tune``: choose a trained model's detection thresholds on validation images."""

from __future__ import annotations

import argparse
from pathlib import Path

from sac.cli.common import EPILOG, add_precision
from sac.core.checks import option
from sac.core.errors import ConfigError
from sac.data.open import FORMATS


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
    """Tune and save (:func:`sac.training.tune_run.tune`); 1 if an image was skipped."""
    from sac.model import resolve_model
    from sac.training.tune import describe
    from sac.training.tune_run import tune

    if args.no_mask and args.settings:
        raise ConfigError("--no-mask tunes no whole-pipeline settings; drop it or --settings")
    settings = () if args.no_mask else args.settings
    record, problems = tune(args.model, args.data, args.format, args.split, output=args.output,
                            limit=args.limit, precision=args.precision, fill=not args.no_fill,
                            settings=settings, metric=args.metric)
    print(f"{describe(record)}; saved {args.output or resolve_model(args.model)}")
    return 1 if problems else 0
