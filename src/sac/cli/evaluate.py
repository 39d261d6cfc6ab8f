"""``sac evaluate``: score a model, or saved ``<name>_labels.tif`` files, on a labelled dataset.

Prints a table and (with ``-o``) writes a JSON report (see :mod:`sac.metrics.report`). Exits 1
after writing the report when any image was skipped, listing what and why.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sac.cli.common import EPILOG, add_precision
from sac.core.checks import option
from sac.core.errors import ConfigError
from sac.data.open import FORMATS, open_dataset, resolve_split

SUBSETS = ("val", "train", "all")
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


def select_names(
    dataset: Any, split: str | None, subset: str | None
) -> tuple[list[str] | None, dict[str, Any]]:
    """Names to evaluate (None = all) and a description of the selection for the report."""
    if split is None:
        if subset not in (None, "all"):
            raise ConfigError(f"--subset {subset} needs --split (a split file or name)")
        return None, {}
    chosen = resolve_split(split)
    subset = subset or "val"
    names = {"train": chosen.train, "val": chosen.val, "all": chosen.train + chosen.val}[subset]
    listed = set(dataset.names) | {p.name for p in dataset.problems}
    if names and not listed & set(names):
        raise ConfigError(
            f"none of the {len(names)} {subset} images of split {split!r} is in {dataset.root}; "
            "is it the split of this dataset?"
        )
    return sorted(names), {"split": split, "subset": subset}


def load_model_predict(model: str, device: str, precision: str, semantic: bool = False,
                       checkpoint: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """Load ``model`` and return its ``predict(image, name)`` function and its config."""
    from sac.pipeline.segmenter import load_segmenter

    segmenter = load_segmenter(model, device=device, precision=precision,
                               checkpoint=checkpoint)

    def predict(image: Any, name: str) -> Any:
        return segmenter.segment(image, name, semantic=semantic)

    return predict, segmenter.config_dict()


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the report; 1 if anything was skipped."""
    from sac.core.fileio import check_writable
    from sac.metrics.report import evaluate_dataset, write_report

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    if args.output is not None:
        check_writable(args.output, args.overwrite)  # fail before a long evaluation
    dataset = open_dataset(args.data, args.format)
    names, selection = select_names(dataset, args.split, args.subset)
    predict, model_config = None, None
    if args.model is not None:
        predict, config = load_model_predict(args.model, args.device, args.precision,
                                             args.semantic,
                                             args.sam_checkpoint)
        model_config = {"model": str(args.model), "device": args.device,
                        "precision": args.precision, "config": config}
    report = evaluate_dataset(
        dataset,
        predict=predict,
        predictions_dir=args.predictions,
        progress=sys.stderr.isatty(),
        names=names,
        limit=args.limit,
    )
    report.dataset.update({"format": args.format, **selection})
    if args.model is not None:
        report.predictions = f"model {args.model}"
    print(report.format_table())
    if args.output is not None:
        write_report(args.output, report, model_config, args.overwrite)
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
