"""The ``sac`` command line: a thin layer over the Python API.

Exit codes: 0 success; 1 a failure; 2 bad input file or array; 3 weights missing or invalid;
4 invalid option or configuration; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np

from sac import __version__
from sac.checks import option
from sac.commands import evaluate as _ev
from sac.commands import segment as _seg
from sac.commands import train as _train
from sac.commands import tune as _tune
from sac.errors import SACError

DEMO_MODEL = "sac-lite-monuseg"
EPILOG = (
    "exit codes: 0 ok, 1 failure, 2 bad input, 3 weights missing/invalid, 4 bad option, "
    "130 interrupted"
)


class Parser(argparse.ArgumentParser):
    """``argparse`` with SAC's exit code for a bad option (4), for every subcommand too."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(4, f"{self.prog}: error: {message}\n")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from sac.backbones import BACKBONES, DEFAULT_BACKBONE

    p.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=sorted(BACKBONES),
                   help=f"SAM-family backbone (default: {DEFAULT_BACKBONE})")
    p.add_argument("--sam-checkpoint", type=Path, default=None,
                   help="base SAM checkpoint (.pth/.pt or .safetensors); default: bundled "
                        "LiteMedSAM weights for lite_medsam")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on some CPUs/GPUs)")


def build_parser() -> argparse.ArgumentParser:
    """Argument parser with all subcommands."""
    parser = Parser(
        prog="sac",
        description="Segment Any Cell: nucleus segmentation with Segment Anything, on a CPU.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"sac {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="segment a real sample image and write labels plus an overlay",
        description="Segment nuclei in one image (default: scikit-image's immunohistochemistry "
                    "sample) with a shipped SAC model (or, with --zero-shot, classical box "
                    "prompts and the base SAM weights), and write <stem>_labels.tif and "
                    "<stem>_overlay.png.",
        epilog=EPILOG,
    )
    demo.add_argument("--image", type=Path, default=None,
                      help="image to segment (default: the bundled IHC sample)")
    demo.add_argument("-o", "--output", type=Path, default=Path("sac_demo_output"),
                      help="output folder (default: ./sac_demo_output)")
    demo.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    demo.add_argument("--model", default=None,
                      help=f"trained model folder or shipped name (default: {DEMO_MODEL} "
                           "when installed)")
    demo.add_argument("--scale", type=option("--scale", 0.05, 20), default=1.0,
                      help="resampling for the model (default 1: the IHC sample is at about "
                           "half the magnification the H&E model was trained at, i.e. at "
                           "the model's own working scale)")
    demo.add_argument("--fill", action="store_true",
                      help="complete the labels from the semantic mask as the model's config "
                           "says (off in the demo: on the IHC sample, unlike the H&E the "
                           "model was tuned on, the mask spreads over brown cytoplasm)")
    demo.add_argument("--zero-shot", action="store_true",
                      help="no trained model: classical boxes prompt the base SAM")
    _add_model_options(demo)

    sub.add_parser("backbones", help="list the available backbones")
    _train.add_parser(sub)
    _seg.add_parser(sub)
    _ev.add_parser(sub)
    _tune.add_parser(sub)
    return parser


def _load_demo_image(path: Path | None) -> tuple[object, str]:
    if path is None:
        from skimage import data

        return data.immunohistochemistry(), "ihc_sample"
    from sac.data.images import read_image

    return read_image(path), path.stem


def cmd_demo(args: argparse.Namespace) -> int:
    """Segment one image with a shipped SAC model (or zero-shot); writes labels + overlay."""
    from sac.backbones import get_spec, load_sam, resolve_device
    from sac.fileio import check_writable
    from sac.formats import outline_overlay, write_labels_tif, write_png
    from sac.imageops import to_rgb_float
    from sac.inference.zeroshot import zero_shot_instances
    from sac.predictor import SamPredictor
    from sac.sacmodel import shipped_models

    resolve_device(args.device)  # cheap option checks before any reading or loading
    image, stem = _load_demo_image(args.image)
    out_labels = args.output / f"{stem}_labels.tif"
    out_overlay = args.output / f"{stem}_overlay.png"
    for path in (out_labels, out_overlay):
        check_writable(path, args.overwrite)
    model_name = args.model or (DEMO_MODEL if DEMO_MODEL in shipped_models() else None)
    if model_name is not None and not args.zero_shot:
        from sac.inference.segment import load_segmenter, without_fill

        seg = load_segmenter(model_name, args.device, args.bf16, args.sam_checkpoint)
        if not args.fill:
            without_fill(seg)
        t0 = time.perf_counter()
        res = seg.segment(image, str(args.image or stem), scale=args.scale)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - t0
        write_labels_tif(out_labels, res.labels, args.overwrite)
        write_png(out_overlay, outline_overlay(to_rgb_float(image, stem), res.labels),  # type: ignore[arg-type]
                  args.overwrite)
        print(f"{stem}: {res.n_nuclei} nuclei in {elapsed:.1f} s (model {model_name})")
        print(f"wrote {out_labels}\nwrote {out_overlay}")
        return 0
    spec = get_spec(args.backbone)
    model = load_sam(args.backbone, args.sam_checkpoint, device=args.device)
    predictor = SamPredictor(model, spec, bf16=args.bf16)
    t0 = time.perf_counter()
    result = zero_shot_instances(predictor, image, source=str(args.image or stem))  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    write_labels_tif(out_labels, result.labels, args.overwrite)
    overlay = outline_overlay(to_rgb_float(image, stem), result.labels)  # type: ignore[arg-type]
    write_png(out_overlay, overlay, args.overwrite)
    n = int(np.count_nonzero(np.unique(result.labels)))
    print(f"{stem}: {n} nuclei from {len(result.boxes)} box prompts in {elapsed:.1f} s "
          f"({args.backbone}, zero-shot: classical boxes, no trained model)")
    print(f"wrote {out_labels}\nwrote {out_overlay}")
    return 0


def cmd_backbones(_: argparse.Namespace) -> int:
    """Print the backbone registry."""
    from sac.backbones import BACKBONES, DEFAULT_BACKBONE

    for name, spec in BACKBONES.items():
        mark = "*" if name == DEFAULT_BACKBONE else " "
        print(f"{mark} {name:12s} {spec.description}")
    return 0


COMMANDS = {"demo": cmd_demo, "backbones": cmd_backbones, "evaluate": _ev.run,
            "train": _train.run, "segment": _seg.run, "tune": _tune.run}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sac`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        print("\nsac: error: no command given (see the list above)", file=sys.stderr)
        return 4
    try:
        return COMMANDS[args.command](args)
    except SACError as exc:
        print(f"sac {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sac: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
