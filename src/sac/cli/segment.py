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
import time
from pathlib import Path
from typing import Any

from sac.cli.common import EPILOG
from sac.core.checks import option
from sac.core.errors import ConfigError, InputError, SACError
from sac.data.images import SLIDE_SUFFIXES, TIFF_SUFFIXES

DEFAULT_MODEL = "sac-lite-monuseg"
CHUNK = 2048  # default whole-slide chunk side


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
                   help=f"model folder or shipped model name (default: {DEFAULT_MODEL})")
    p.add_argument("--sam-checkpoint", type=Path, default=None,
                   help="base SAM checkpoint, for models trained on one that is not bundled")
    p.add_argument("--save-semantic", action="store_true",
                   help="also write <stem>_semantic.png, the one-prompt-set-per-tile mask")
    p.add_argument("--save-overlay", action="store_true",
                   help="also write <stem>_overlay.png, the image with nucleus outlines")
    p.add_argument("--save-geojson", action="store_true",
                   help="also write <stem>.geojson, nucleus polygons QuPath imports as "
                        "detections")
    p.add_argument("--save-rois", action="store_true",
                   help="also write <stem>_rois.zip, one ImageJ polygon ROI per nucleus")
    p.add_argument("--save-csv", action="store_true",
                   help="also write <stem>_nuclei.csv: id, centroid, area, perimeter, "
                        "eccentricity, mean intensity, predicted quality")
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
    p.add_argument("--no-auto-scale", action="store_true",
                   help="use the model's own scale for every image, without estimating "
                        "the nucleus size")
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
    p.add_argument("--tile-size", type=option("--tile-size", 32, integer=True),
                   default=None, help="default: the model input size")
    p.add_argument("--overlap", type=option("--overlap", 0, integer=True),
                   default=None, help="tile overlap in pixels")
    p.add_argument("--batch-size", type=option("--batch-size", 1, 4096, integer=True),
                   default=64, help="prompt sets per decoder batch")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on CPU)")
    p.add_argument("--mask-resolution", choices=("input", "model"), default="input",
                   help="input: decode each mask's edges at the input image's resolution "
                        "(default); model: at the model's scale, labels resized (a little "
                        "faster, blockier edges when the model shrinks the image)")
    p.add_argument("--no-fill", action="store_true",
                   help="do not complete the instance labels from the semantic mask even if "
                        "the model's config asks for it (for images unlike its training data)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--skip-existing", action="store_true",
                   help="skip inputs whose outputs all exist already (for reruns)")
    p.add_argument("--quiet", action="store_true", help="print only errors and the summary")


def _is_slide(path: Path, args: argparse.Namespace) -> bool:
    suffix = path.suffix.lower()
    return suffix in SLIDE_SUFFIXES or (args.wsi and suffix in TIFF_SUFFIXES)


def _segment_slide(segmenter: Any, path: Path, stem: str, args: argparse.Namespace) -> Any:
    """A whole slide: GeoJSON and CSV (always), chunk by chunk, resumable."""
    from sac.core.fileio import check_writable, output_paths
    from sac.outputs.images import write_labels_tif
    from sac.slides.segment import segment_slide

    out_labels = output_paths(args.output, stem, ["labels"])["labels"]
    scale = args.scale
    if args.diameter is not None:
        scale = segmenter.diameter_scale(args.diameter)
    if args.slide_labels:
        check_writable(out_labels, args.overwrite)
    res = segment_slide(segmenter, path, args.output, level=args.level,
                        region=tuple(args.region) if args.region else None,
                        chunk=args.chunk_size, tissue=not args.no_tissue_mask,
                        return_labels=args.slide_labels, overwrite=args.overwrite,
                        progress=not args.quiet, scale=scale, stem=stem)
    if res.labels is not None:
        res.outputs["labels"] = write_labels_tif(out_labels, res.labels, args.overwrite,
                                                 res.pixel_size_um)
    return res


def _process(path: Path, stem: str, args: argparse.Namespace, segmenter: Any,
             scale: float | None, written: list[Path]) -> tuple[int, str]:
    """Segment one input and write its outputs; returns (nuclei, where they went)."""
    from sac.core.fileio import check_writable
    from sac.data.images import plausible_pixel_size, read_image
    from sac.outputs.write import write_outputs
    from sac.pipeline.expert import expert_for
    from sac.pipeline.size import file_scale

    if _is_slide(path, args):
        res = _segment_slide(segmenter, path, stem, args)
        where = ", ".join(str(p) for p in res.outputs.values())
        size = "" if res.size is None else f"; {res.size.describe()}"
        return res.n_nuclei, (f"{where} ({res.n_chunks} chunks, {res.n_skipped_no_tissue} "
                              f"without tissue, {res.n_resumed} resumed){size}")
    outs = _outputs(args, stem, slide=False)
    for out in outs.values():
        check_writable(out, args.overwrite)
    expert = expert_for(args.prompts, stem)
    image = read_image(path, channel=args.channel)
    # the pixel size goes into the outputs; it sets the scale when the user gave none
    pixel = args.pixel_size if args.pixel_size is not None else plausible_pixel_size(path)
    why = ""
    if scale is None and args.diameter is None:
        cfg = segmenter.config
        scale, why = file_scale(cfg.input_scale, cfg.pixel_size_um, pixel)
    result = segmenter.segment(image, str(path), scale=scale, expert=expert,
                               semantic=args.save_semantic, diameter=args.diameter)
    write_outputs(outs, image, result, pixel, stem, args.overwrite, written)
    return result.n_nuclei, f"{outs['labels']}; {result.size.describe()}{why}"


def _outputs(args: argparse.Namespace, stem: str, slide: bool) -> dict[str, Path]:
    """The files to write for one input, by kind."""
    from sac.core.fileio import output_paths

    if slide:
        return output_paths(args.output, stem,
                            ["geojson", "csv", *(["labels"] if args.slide_labels else [])])
    wanted = {"labels": True, "semantic": args.save_semantic, "overlay": args.save_overlay,
              "geojson": args.save_geojson, "rois": args.save_rois, "csv": args.save_csv}
    return output_paths(args.output, stem, [k for k, on in wanted.items() if on])


def run(args: argparse.Namespace) -> int:
    """Segment every input; report failures at the end."""
    from tqdm import tqdm

    from sac.core.device import resolve_device
    from sac.core.fileio import check_output_folder, output_stems
    from sac.core.resample import input_scale
    from sac.data.inputs import expand_inputs
    from sac.pipeline.segmenter import load_segmenter

    resolve_device(args.device)
    if args.region is not None and min(args.region[2:]) < 1:
        raise ConfigError(f"--region width and height must be >= 1; got {args.region[2:]}")
    files, missing, ignored = expand_inputs(args.inputs)
    failures: list[tuple[str, SACError]] = [
        (m, InputError(f"{m}: no such file, or no image files in that folder/pattern"))
        for m in missing]
    if ignored and not args.quiet:
        print(f"left out {ignored} file(s) named like SAC outputs (*_labels.tif, "
              "*_semantic.png, *_overlay.png) in the input folder(s); name them to segment "
              "them", file=sys.stderr)
    if not files:
        for _, exc in failures:
            print(f"sac segment: error: {exc}", file=sys.stderr)
        return 2
    stems = output_stems(files)  # distinct output names before any work
    _note_slide_options(args, [p for p in files if not _is_slide(p, args)])
    if args.skip_existing:
        todo = [p for p in files
                if not all(o.exists() for o in _outputs(args, stems[p], _is_slide(p, args))
                           .values())]
        if len(todo) < len(files) and not args.quiet:
            print(f"skipped {len(files) - len(todo)} input(s) whose outputs all exist "
                  "(--skip-existing)", file=sys.stderr)
        skipped, files = len(files) - len(todo), todo
    else:
        skipped = 0
    if args.prompts is not None and not args.prompts.exists():
        raise InputError(f"--prompts {args.prompts} does not exist")
    if args.prompts is not None and args.prompts.is_file() and len(files) > 1:
        raise ConfigError("--prompts FILE applies to one input image; for several, pass a "
                          "folder of <stem>.csv files")
    segmenter = load_segmenter(args.model or DEFAULT_MODEL, args.device, args.bf16,
                               args.sam_checkpoint, tile_size=args.tile_size,
                               overlap=args.overlap, batch_size=args.batch_size,
                               mask_resolution=args.mask_resolution,
                               auto_scale=not args.no_auto_scale, fill=not args.no_fill)
    check_output_folder(args.output)  # a wrong -o fails now, not after the first image
    cfg = segmenter.config
    scale = None  # estimated per image (or the model's own)
    if args.scale is not None or args.pixel_size is not None:
        scale = input_scale(cfg.input_scale, cfg.pixel_size_um, args.scale, args.pixel_size)
    t0, n_nuclei, done = time.perf_counter(), 0, 0
    bar = tqdm(files, disable=args.quiet or len(files) < 2, unit="image", dynamic_ncols=True)
    for path in bar:
        t = time.perf_counter()
        written: list[Path] = []
        try:
            n, where = _process(path, stems[path], args, segmenter, scale, written)
        except Exception as exc:  # one bad file never ends the batch
            for out in written:  # no partial set of outputs for a failed image
                out.unlink(missing_ok=True)
            err = _as_sac_error(exc, path, args.output)
            failures.append((str(path), err))
            bar.write(f"sac segment: error: {_named(str(path), err)}", file=sys.stderr)
            continue
        done += 1
        n_nuclei += n
        if not args.quiet:
            bar.write(f"{path.name}: {n} nuclei in {time.perf_counter() - t:.1f} s -> {where}")
    total = time.perf_counter() - t0
    print(f"segmented {done} of {len(files) + len(missing)} input(s), {n_nuclei} nuclei, "
          f"{total:.1f} s" + (f"; {skipped} skipped, outputs present" if skipped else ""),
          file=sys.stderr)
    if failures:
        print(f"{len(failures)} failure(s):", file=sys.stderr)
        for name, exc in failures:
            print(f"  {_named(name, exc)}", file=sys.stderr)
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


def _named(name: str, exc: Exception) -> str:
    """The message, with the input's name in front unless it already starts with it."""
    text = str(exc)
    return text if text.startswith(name) else f"{name}: {text}"


def _as_sac_error(exc: Exception, path: Path, out: Path) -> SACError:
    """A message for the user from any failure of one input (write errors say which)."""
    import errno

    if isinstance(exc, SACError):
        return exc
    if isinstance(exc, OSError):
        advice = {errno.ENOSPC: "free some space or choose another output folder (-o)",
                  errno.EACCES: "choose an output folder (-o) you may write to",
                  errno.EROFS: "the file system is read-only; choose another output folder"}
        hint = advice.get(exc.errno or 0, "check the output folder (-o)")
        return SACError(f"{path}: cannot write the outputs to {out}: "
                        f"{exc.strerror or exc}; {hint}")
    if isinstance(exc, MemoryError):
        return SACError(f"{path}: out of memory while segmenting it; use a smaller "
                        "--tile-size or --batch-size, or segment it as a slide (--wsi)")
    return SACError(f"{path}: unexpected {type(exc).__name__}: {exc} (a bug in SAC: please "
                    "report it with this message)")
