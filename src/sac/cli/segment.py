"""``sac segment``: instance labels (and optionally the semantic mask) for images of any size.

Writes ``OUTDIR/<stem>_labels.tif`` (uint16, uint32 above 65,535 nuclei; 0 = background, with
the pixel size in its resolution tags when ``--pixel-size`` is given) for every input, and on
request ``<stem>_semantic.png`` (0/255), ``<stem>_overlay.png``, ``<stem>.geojson`` (QuPath),
``<stem>_rois.zip`` (ImageJ) and ``<stem>_nuclei.csv`` (measurements). A failing
file is reported and skipped; the others go on; the exit code says whether all succeeded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sac.cli.common import (
    EPILOG,
    add_save_flags,
    add_segment_options,
    options_from,
    saved_kinds,
)
from sac.core.checks import option
from sac.core.errors import ConfigError, InputError, SACError
from sac.outputs.kinds import IMAGE_ENDINGS, OPTIONAL
from sac.pipeline.choose import DEFAULT_MODEL
from sac.slides.options import CHUNK, SlideOptions

if TYPE_CHECKING:
    from sac.batch.settings import SegmentSettings


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``segment`` on the ``sac`` subcommand parser."""

    p = sub.add_parser(
        "segment", help="segment nuclei in images with a trained SAC model",
        description="Detect nuclei with the model's prompt generator, prompt SAM with them and "
        "write instance labels OUTDIR/<stem>_labels.tif for each input (files, folders or "
        "glob patterns).", epilog=EPILOG + "; with several inputs, a failing file is skipped "
        "and the exit code is that of the failures (2 if all were bad input)")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--model", default=None,
                   help=f"model folder, shipped model name, or auto (per image, the shipped "
                   "specialist for its type: sac-lite-monuseg for stained bright-field "
                   "images, sac-lite-dsb2018 for fluorescence and gray bright-field, "
                   "sac-lite-monuseg for whole slides; the summary says which) "
                   f"(default: {DEFAULT_MODEL})")
    p.add_argument("--sam-checkpoint", type=Path, default=None,
                   help="base SAM checkpoint, for models trained on one that is not bundled")
    add_save_flags(p, OPTIONAL)
    p.add_argument("--prompts", type=Path, default=None,
                   help="expert points: a CSV (x,y[,label]) for one input, or a folder of "
                        "<stem>.csv files")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--scale", type=option("--scale", 0.05, 20), default=None,
                       help="resample inputs by this factor before the model (default: the "
                            "model's own, for images at its training data's magnification)")
    scale.add_argument("--pixel-size", type=option("--pixel-size", 0, 100, lo_open=True),
                       default=None,
                       help="micrometres per pixel of the inputs; resampled to the model's")
    scale.add_argument("--diameter", type=option("--diameter", 0, 10_000, lo_open=True),
                       default=None,
                       help="typical nucleus diameter in input pixels; resampled so that "
                            "it matches the model's training size. Without --scale, "
                            "--pixel-size or --diameter, each image's nucleus size is "
                            "estimated and images outside the model's training range are "
                            "resampled (see --no-auto-scale)")
    w = p.add_argument_group("whole-slide images (SVS, NDPI, MRXS, SCN, BIF; pyramidal TIFF "
                             "with --wsi): processed in chunks, written as GeoJSON + CSV")
    w.add_argument("--wsi", action="store_true",
                   help="treat TIFF inputs as whole slides (read region by region)")
    w.add_argument("--level", type=option("--level", 0, integer=True), default=None,
                   help="pyramid level to process (default: chosen from the pixel sizes)")
    w.add_argument("--region", type=option("--region", 0, integer=True),
                   nargs=4, metavar=("X", "Y", "W", "H"), default=None,
                   help="process only this region (level-0 pixels)")
    w.add_argument("--chunk-size", type=option("--chunk-size", 64, 16384, integer=True),
                   default=CHUNK,
                   help=f"pixels per chunk side at the processed level (default {CHUNK})")
    w.add_argument("--slide-labels", action="store_true",
                   help="also write <stem>_labels.tif for the slide or --region at the "
                        "processed level (up to 400 megapixels)")
    w.add_argument("--no-tissue-mask", action="store_true",
                   help="process background chunks too (needed for fluorescence slides)")
    p.add_argument("--channel", type=option("--channel", 0, integer=True), default=None,
                   help="for multi-page/multi-channel TIFFs (or one colour of an RGB image): "
                        "the page or channel holding the nuclei, from 0")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_segment_options(p.add_argument_group("inference (sac.SegmentOptions)"))
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--skip-existing", action="store_true",
                   help="skip inputs whose outputs all exist already (for reruns)")
    p.add_argument("--quiet", action="store_true", help="print only errors and the summary")
    d = p.add_argument_group("many machines (see docs/scaling.md)")
    d.add_argument("--shard", default=None, metavar="I/N",
                   help="do shard I (from 0) of N: every N-th image and every N-th chunk of "
                        "each slide, e.g. --shard $SLURM_ARRAY_TASK_ID/"
                        "$SLURM_ARRAY_TASK_COUNT in a job array; the last shard to finish a "
                        "slide writes its files (else: sac merge-slide)")
    d.add_argument("--cluster", default=None, metavar="SPEC",
                   help="run on Dask: local:N (N worker processes here), tcp://HOST:PORT (a "
                        "running scheduler), or slurm/pbs/lsf/sge (dask-jobqueue, with "
                        "--cluster-config); needs segment-any-cell[distributed]")
    d.add_argument("--cluster-config", type=Path, default=None, metavar="FILE",
                   help="YAML/JSON settings of a dask-jobqueue cluster (cores, memory, "
                        "walltime, queue, ..., and jobs: how many to start)")


def settings_from(args: argparse.Namespace) -> SegmentSettings:
    """The run's :class:`~sac.batch.settings.SegmentSettings` from the parsed options."""
    from sac.batch.settings import SegmentSettings

    save = saved_kinds(args, OPTIONAL)
    return SegmentSettings(
        output=args.output, model=args.model or DEFAULT_MODEL, device=args.device,
        options=options_from(args), sam_checkpoint=args.sam_checkpoint, save=save,
        prompts=args.prompts, scale=args.scale, pixel_size=args.pixel_size,
        diameter=args.diameter, channel=args.channel, wsi=args.wsi,
        slide=SlideOptions(args.level, tuple(args.region) if args.region else None,
                           args.chunk_size, tissue=not args.no_tissue_mask),
        slide_labels=args.slide_labels,
        overwrite=args.overwrite)


def run(args: argparse.Namespace) -> int:
    """Segment every input (this shard's, or on a Dask cluster); report failures at the end."""
    from sac.batch.jobs import is_slide, named, outputs_complete, outputs_over_inputs
    from sac.batch.run import run_local, shard_inputs
    from sac.batch.settings import load_for
    from sac.batch.shard import Shard
    from sac.core.device import describe_precision, resolve_device
    from sac.core.fileio import check_output_folder, output_stems
    from sac.data.inputs import expand_inputs
    from sac.sam.runtime import resolve_runtime

    resolve_device(args.device)
    if args.region is not None and min(args.region[2:]) < 1:
        raise ConfigError(f"--region width and height must be >= 1; got {args.region[2:]}")
    shard = None if args.shard is None else Shard.parse(args.shard)
    if shard is not None and args.cluster is not None:
        raise ConfigError("--shard splits the work between copies of the command; --cluster "
                          "hands it to Dask: use one or the other")
    settings = settings_from(args)
    files, missing, ignored = expand_inputs(args.inputs, IMAGE_ENDINGS)
    failures: list[tuple[str, SACError]] = [
        (m, InputError(f"{m}: no such file, or no image files in that folder/pattern"
                       if "(cannot list" not in m else m)) for m in missing]
    if ignored and not args.quiet:
        print(f"left out {ignored} file(s) named like SAC outputs (*_labels.tif, "
              "*_semantic.png, *_overlay.png) in the input folder(s); name them to segment "
              "them", file=sys.stderr)
    if not files:
        for _, exc in failures:
            print(f"sac segment: error: {exc}", file=sys.stderr)
        return 2
    stems = output_stems(files)  # distinct output names before any work
    in_the_way = outputs_over_inputs(files, stems, settings)  # never write an input
    failures += [(str(p), exc) for p, exc in in_the_way.items()]
    files = [p for p in files if p not in in_the_way]
    _note_slide_options(args, [p for p in files if not is_slide(p, settings)])
    if shard is not None and shard.count > 1 and any(is_slide(p, settings) for p in files):
        if args.slide_labels:
            raise ConfigError("--slide-labels needs every chunk of a slide in one process; "
                              "leave it out with --shard")
        if args.overwrite:
            raise ConfigError("--overwrite with --shard would let shards delete each other's "
                              "slide parts; remove the old outputs first")
    files = shard_inputs(files, settings, shard)
    skipped = 0
    if args.skip_existing:
        todo = [p for p in files if not outputs_complete(p, stems[p], settings)]
        skipped, files = len(files) - len(todo), todo
        if skipped and not args.quiet:
            print(f"skipped {skipped} input(s) whose outputs all exist (--skip-existing)",
                  file=sys.stderr)
    if args.prompts is not None and not args.prompts.exists():
        raise InputError(f"--prompts {args.prompts} does not exist")
    if args.prompts is not None and args.prompts.is_file() and len(files) > 1:
        raise ConfigError("--prompts FILE applies to one input image; for several, pass a "
                          "folder of <stem>.csv files")
    seg = load_for(settings)  # a bad model fails before any input (and any folder)
    check_output_folder(args.output)  # a wrong -o fails now, not after the first image
    if args.cluster is not None:
        from sac.batch.cluster import open_cluster, run_dask

        cluster = open_cluster(args.cluster, args.cluster_config)
        try:
            report = run_dask(cluster, files, stems, settings, quiet=args.quiet, seg=seg)
        finally:
            cluster.close()
    else:
        report = run_local(files, stems, settings, shard, quiet=args.quiet, seg=seg)
    failures += report.failures
    device = resolve_device(settings.device)
    how = (f"{describe_precision(settings.options.precision, device)}, encoder in "
           f"{resolve_runtime(settings.options.runtime, device)}")
    print(f"segmented {report.done} of {len(files) + len(missing) + len(in_the_way)} input(s), "
          f"{report.nuclei} nuclei, {report.seconds:.1f} s, {how}"
          + (f"; {skipped} skipped, outputs present" if skipped else ""), file=sys.stderr)
    if failures:
        print(f"{len(failures)} failure(s):", file=sys.stderr)
        for name, exc in failures:
            print(f"  {named(name, exc)}", file=sys.stderr)
        return max(e.exit_code for _, e in failures) if len(
            {e.exit_code for _, e in failures}) == 1 else 1
    return 0


def _note_slide_options(args: argparse.Namespace, images: list[Path]) -> None:
    """Say so when whole-slide options were given for inputs that are plain images."""
    given = [flag for flag, on in (("--region", args.region is not None),
                                   ("--level", args.level is not None),
                                   ("--chunk-size", args.chunk_size != CHUNK),
                                   ("--slide-labels", args.slide_labels),
                                   ("--no-tissue-mask", args.no_tissue_mask)) if on]
    if args.wsi:
        given.append("--wsi")
    if images and given:
        which = ", ".join(p.name for p in images[:3]) + (" ..." if len(images) > 3 else "")
        print(f"note: {', '.join(given)} apply to whole slides only; {len(images)} input(s) "
              f"({which}) are plain images and are segmented whole", file=sys.stderr)
