"""``sac evaluate``: score a model, or saved ``<name>_labels.tif`` files, on a labelled dataset.

Prints a table and (with ``-o``) writes a JSON report (see :mod:`sac.metrics.report`). Exits 1
after writing the report when any image was skipped, listing what and why.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sac.cli.common import EPILOG, add_precision, options_from
from sac.core.checks import option
from sac.core.errors import ConfigError
from sac.data.open import FORMATS
from sac.metrics.evaluate import SUBSETS

MAX_LISTED = 20  # skipped images printed to the terminal (all of them are in the JSON)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` on the ``sac`` subcommand parser."""
    p = sub.add_parser(
        "evaluate",
        help="score a model or saved label images on a labelled dataset",
        description="Segment every image of a labelled dataset with a model (--model), or read "
        "saved predictions <name>_labels.tif (--predictions), and report pixel Dice/IoU/F1, "
        "object F1, AJI, PQ and the DSB 2018 score per image and over the dataset.",
        epilog=EPILOG + "; 1 also when any image was skipped (the report is still written)",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset folder")
    p.add_argument("--format", required=True, choices=FORMATS, help="dataset layout")
    p.add_argument("--split", default=None,
                   help="split JSON file, or a built-in split name (monuseg, dsb2018)")
    p.add_argument("--subset", choices=SUBSETS, default=None,
                   help="part of --split to evaluate (default: val)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--predictions", type=Path, default=None,
                     help="folder with <name>_labels.tif instance labels to score")
    src.add_argument("--model", default=None, help="model to run (a saved SAC model or name)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="JSON report to write (per-image and aggregate values)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    p.add_argument("--device", default="cpu", help="torch device for --model (default: cpu)")
    add_precision(p)
    p.add_argument("--semantic", action="store_true",
                   help="with --model, also score the semantic mask (semantic_pixel_* keys)")
    p.add_argument("--sam-checkpoint", type=Path, default=None,
                   help="base SAM checkpoint for a --model trained on one not bundled")
    p.add_argument("--limit", type=option("--limit", 1, integer=True), default=None,
                   help="evaluate only the first N images (in name order)")


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the report; 1 if anything was skipped."""
    from sac.core.fileio import check_writable
    from sac.metrics.evaluate import evaluate
    from sac.metrics.report import write_report

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    if args.output is not None:
        check_writable(args.output, args.overwrite)  # fail before a long evaluation
    report = evaluate(args.data, args.format, model=args.model, predictions=args.predictions,
                      split=args.split, subset=args.subset, limit=args.limit,
                      device=args.device, options=options_from(args), semantic=args.semantic,
                      checkpoint=args.sam_checkpoint, progress=sys.stderr.isatty())
    print(report.format_table())
    if args.output is not None:
        write_report(args.output, report, overwrite=args.overwrite)
        print(f"wrote {args.output}")
    if report.skipped:
        print(f"sac evaluate: skipped {report.n_skipped} of "
              f"{report.n_scored + report.n_skipped} image(s):", file=sys.stderr)
        for s in report.skipped[:MAX_LISTED]:
            text = s.message if s.message.startswith(s.name) else f"{s.name}: {s.message}"
            print(f"  {text}", file=sys.stderr)  # messages often name the file already
        if report.n_skipped > MAX_LISTED:
            print(f"  ... and {report.n_skipped - MAX_LISTED} more (all are listed in the JSON "
                  "report)", file=sys.stderr)
        return 1
    return 0
