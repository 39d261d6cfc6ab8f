"""``sac refine``: SAM's outlines for another tool's nuclei, ids kept."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sac.cli.common import (
    EPILOG,
    add_save_flags,
    add_segment_options,
    options_from,
    saved_kinds,
)
from sac.core.checks import option
from sac.core.errors import ConfigError
from sac.outputs.kinds import KINDS, OPTIONAL

#: outputs beside the labels TIFF, as ``sac segment`` writes them (no semantic mask here)
EXTRA_OUTPUTS = tuple(k for k in OPTIONAL if not KINDS[k].needs_semantic)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``refine`` on the ``sac`` subcommand parser."""
    from sac.pipeline.choose import DEFAULT_MODEL
    from sac.pipeline.refine import MIN_IOU, REFINE_PROMPTS, RefineSettings

    p = sub.add_parser(
        "refine", help="refine another tool's nuclei (labels, GeoJSON, ImageJ ROIs) with SAM",
        description="Use each nucleus of LABELS (from StarDist, cellpose, QuPath, a threshold, "
        "a hand drawing) as a prompt for SAM and write SAM's outline in its place, with the "
        "same id, to OUTDIR/<stem>_labels.tif. First the nuclei are regrouped by the model's "
        "own detections: merged nuclei split (the new parts get new ids), fragments of one "
        "nucleus joined, objects with no nucleus dropped; --keep-objects refines the outlines "
        "of exactly the given objects instead. A nucleus keeps its outline where SAM finds "
        "nothing better (an empty or low-quality mask, or one that moved to another object).",
        epilog=EPILOG)
    p.add_argument("image", type=Path, help="the image the labels belong to")
    p.add_argument("--labels", type=Path, required=True,
                   help="its nuclei: a label image (TIFF/PNG), QuPath GeoJSON (.geojson/.json) "
                        "or an ImageJ ROI file or ROI Manager zip (.roi/.zip)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="model folder, shipped name or auto (default: %(default)s)")
    p.add_argument("--keep-objects", action="store_true",
                   help="refine the given objects' outlines only: no splitting, joining or "
                        "dropping by the model's detections")
    p.add_argument("--prompt", choices=REFINE_PROMPTS, default=RefineSettings.prompt,
                   help="what each nucleus gives SAM: its inner point, its box, or both "
                        "(default %(default)s)")
    p.add_argument("--neighbour-negatives",
                   type=option("--neighbour-negatives", 0, 16, integer=True),
                   default=RefineSettings.neighbour_negatives,
                   help="nearest neighbours' centres given as negative points "
                        "(default %(default)s)")
    p.add_argument("--min-iou", type=option("--min-iou", 0, 1), default=None,
                   help="overlap with the given outline a new one needs to replace it "
                        f"(default {MIN_IOU[True]}; with --keep-objects {MIN_IOU[False]})")
    p.add_argument("--scale", type=option("--scale", 0.05, 20), default=None,
                   help="resample the image by this factor for the model (default: its "
                        "automatic scale, as sac segment chooses it)")
    add_save_flags(p, EXTRA_OUTPUTS)
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_segment_options(p, ("precision", "runtime"))
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def run(args: argparse.Namespace) -> int:
    """Read the image and its labels, refine, write, and say how many nuclei changed."""
    from sac.core.fileio import check_output_folder
    from sac.data.images import plausible_pixel_size, read_image
    from sac.data.shapes import read_label_file
    from sac.outputs.kinds import output_paths
    from sac.outputs.write import write_outputs
    from sac.pipeline.choose import concrete
    from sac.pipeline.refine import RefineSettings, refine_labels
    from sac.pipeline.result import SegmentResult
    from sac.pipeline.segmenter import load_segmenter

    settings = RefineSettings(args.prompt, args.neighbour_negatives, args.min_iou, args.scale,
                              not args.keep_objects)
    image = read_image(args.image)
    labels = read_label_file(args.labels, image.shape[:2])
    check_output_folder(args.output)
    kinds = ["labels", *saved_kinds(args, EXTRA_OUTPUTS)]
    paths = output_paths(args.output, args.image.stem, kinds)
    existing = [p for p in paths.values() if p.exists()]
    if existing and not args.overwrite:
        raise ConfigError(f"{existing[0]} already exists; pass --overwrite to replace it or "
                          "choose another -o folder")
    seg, chosen = concrete(load_segmenter(args.model, args.device,
                                          options_from(args)), image, str(args.image))
    name = chosen or str(args.model)  # --model auto: the specialist for this image's type
    out = refine_labels(seg, image, labels, settings)
    result = SegmentResult(out.labels, None, out.scores, out.nuclei)
    args.output.mkdir(parents=True, exist_ok=True)
    write_outputs(paths, image, result, plausible_pixel_size(args.image), args.image.stem,
                  overwrite=args.overwrite)
    print(f"refined {args.labels} with {name} at scale {out.scale:.3g}: {out.summary()}; "
          f"wrote {paths['labels']}", file=sys.stderr)
    return 0
