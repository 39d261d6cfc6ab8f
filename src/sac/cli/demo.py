"""``sac demo``: segment one real image and write its labels and an outline overlay."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from sac.cli.common import EPILOG, add_model_options
from sac.core.checks import option

DEMO_MODEL = "sac-lite-monuseg"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``demo`` on the ``sac`` subcommand parser."""
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
    add_model_options(demo)


def _load_image(path: Path | None) -> tuple[np.ndarray, str]:
    if path is None:
        from sac.data.samples import IHC_SAMPLE, ihc_sample

        return ihc_sample(), IHC_SAMPLE
    from sac.data.images import read_image

    return read_image(path), path.stem


def _segment(args: argparse.Namespace, image: np.ndarray, source: str, model_name: str
             ) -> tuple[np.ndarray, str, float]:
    """Labels from a trained model, what was found, and the seconds it took (not loading)."""
    from sac.pipeline.segmenter import load_segmenter

    seg = load_segmenter(model_name, args.device, checkpoint=args.sam_checkpoint,
                         precision=args.precision, fill=args.fill)
    t0 = time.perf_counter()
    res = seg.segment(image, source, scale=args.scale)
    return res.labels, f"{res.n_nuclei} nuclei", time.perf_counter() - t0


def _zero_shot(args: argparse.Namespace, image: np.ndarray, source: str
               ) -> tuple[np.ndarray, str, float]:
    """Labels from classical box prompts and the base SAM, what was found, and the seconds
    it took (not loading)."""
    from sac.core.device import resolve_device, use_bf16
    from sac.pipeline.zeroshot import zero_shot_instances
    from sac.sam import SamPredictor, get_spec, load_sam

    model = load_sam(args.backbone, args.sam_checkpoint, device=args.device)
    predictor = SamPredictor(model, get_spec(args.backbone),
                             bf16=use_bf16(args.precision, resolve_device(args.device)))
    t0 = time.perf_counter()
    result = zero_shot_instances(predictor, image, source=source)
    n = int(np.count_nonzero(np.unique(result.labels)))
    return result.labels, f"{n} nuclei from {len(result.boxes)} box prompts", \
        time.perf_counter() - t0


def run(args: argparse.Namespace) -> int:
    """Segment one image with a shipped SAC model (or zero-shot); writes labels + overlay."""
    from sac.core.device import resolve_device
    from sac.core.fileio import check_writable
    from sac.core.images import to_rgb_float
    from sac.model import shipped_models
    from sac.outputs.images import outline_overlay, write_labels_tif, write_png
    from sac.outputs.kinds import output_paths

    resolve_device(args.device)  # cheap option checks before any reading or loading
    image, stem = _load_image(args.image)
    outs = output_paths(args.output, stem, ["labels", "overlay"])
    out_labels, out_overlay = outs["labels"], outs["overlay"]
    for path in (out_labels, out_overlay):
        check_writable(path, args.overwrite)
    model_name = args.model or (DEMO_MODEL if DEMO_MODEL in shipped_models() else None)
    source = str(args.image or stem)
    labels: Any
    if model_name is not None and not args.zero_shot:
        labels, what, elapsed = _segment(args, image, source, model_name)
        how = f"model {model_name}"
    else:
        labels, what, elapsed = _zero_shot(args, image, source)
        how = f"{args.backbone}, zero-shot: classical boxes, no trained model"
    write_labels_tif(out_labels, labels, args.overwrite)
    write_png(out_overlay, outline_overlay(to_rgb_float(image, stem), labels), args.overwrite)
    print(f"{stem}: {what} in {elapsed:.1f} s ({how})")
    print(f"wrote {out_labels}\nwrote {out_overlay}")
    return 0
