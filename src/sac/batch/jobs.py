"""One input of ``sac segment``: segment it and write its files, in one process or split.

An image is segmented by :func:`segment_image` (pure: reads, computes, writes nothing, so it
can run on any worker) and written by :func:`write_image` (atomically, never overwriting
silently, in the process that owns the output folder). A whole slide goes through
:mod:`sac.slides.segment`'s plan / chunk / assemble steps. :func:`process_input` is both steps
in one process, the single-process path and a job-array shard.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sac.batch.settings import SegmentSettings
from sac.core.errors import SACError
from sac.core.fileio import check_writable
from sac.data.images import SLIDE_SUFFIXES, TIFF_SUFFIXES
from sac.outputs.kinds import KINDS, output_paths
from sac.pipeline.scale import ScaleRequest, given_scale

if TYPE_CHECKING:
    from sac.pipeline.result import SegmentResult
    from sac.pipeline.segmenter import AnySegmenter, Segmenter


def is_slide(path: Path, settings: SegmentSettings) -> bool:
    """Whether ``path`` is read region by region as a whole slide."""
    suffix = path.suffix.lower()
    return suffix in SLIDE_SUFFIXES or (settings.wsi and suffix in TIFF_SUFFIXES)


def outputs_for(settings: SegmentSettings, stem: str, slide: bool) -> dict[str, Path]:
    """The files one input gets, by kind."""
    if slide:  # the streamed kinds, and the labels only as asked (a slide-sized TIFF)
        kinds = [k for k, kind in KINDS.items() if kind.slide and k != "labels"]
        kinds += ["labels"] if settings.slide_labels else []
    else:
        kinds = [k for k in KINDS if k == "labels" or k in settings.save]
    return output_paths(settings.output, stem, kinds)


def outputs_over_inputs(files: list[Path], stems: dict[Path, str],
                        settings: SegmentSettings) -> dict[Path, SACError]:
    """Inputs some of whose outputs would be written over an input of the same run (``a.png``
    beside an earlier ``a_labels.tif`` given as an input, with ``-o`` their folder): each
    such input fails, whatever ``--overwrite`` says, so that no input is ever written."""
    from sac.core.errors import InputError

    def key(p: Path) -> str:
        return os.path.normcase(os.path.realpath(p))

    inputs = {key(p): p for p in files}
    bad: dict[Path, SACError] = {}
    for path in files:
        for out in outputs_for(settings, stems[path], is_slide(path, settings)).values():
            hit = inputs.get(key(out))
            if hit is not None:
                bad[path] = InputError(
                    f"{path}: its output {out.name} would replace the input {hit} of this "
                    "run; choose another output folder (-o) or leave that file out")
                break
    return bad


def outputs_complete(path: Path, stem: str, settings: SegmentSettings) -> bool:
    """Whether every output of the input exists (``--skip-existing``)."""
    return all(p.exists() for p in outputs_for(settings, stem, is_slide(path, settings))
               .values())


def scale_request(settings: SegmentSettings, file_pixel_size: float | None = None
                  ) -> ScaleRequest:
    """What the run's options (and the input file) say of an input's scale, for the policy
    :func:`sac.pipeline.scale.choose_scale`."""
    return ScaleRequest(settings.scale, settings.pixel_size, settings.diameter,
                        file_pixel_size)


@dataclass
class ImageOutcome:
    """A segmented image, ready to be written."""

    image: np.ndarray
    result: SegmentResult
    pixel_size_um: float | None
    note: str = ""  # what the file's pixel size did to the scale, for the summary line


def segment_image(path: Path, stem: str, settings: SegmentSettings, seg: AnySegmenter
                  ) -> ImageOutcome:
    """Read and segment one image; writes nothing."""
    from sac.data.images import plausible_pixel_size, read_image
    from sac.pipeline.choose import AutoSegmenter, with_model
    from sac.pipeline.expert import expert_for

    expert = expert_for(settings.prompts, stem)
    image = read_image(path, channel=settings.channel)
    chosen = None
    if isinstance(seg, AutoSegmenter):  # --model auto: the specialist for this image
        seg, *chosen = seg.pick(image, str(path))
    # the pixel size goes into the outputs; it sets the scale when the user gave none
    found = plausible_pixel_size(path)
    pixel = settings.pixel_size if settings.pixel_size is not None else found
    given = given_scale(seg.config, scale_request(settings, found))
    scale = None if settings.diameter is not None else given.scale  # the diameter says it
    result = seg.segment(image, str(path), scale=scale, expert=expert,
                         semantic="semantic" in settings.save, diameter=settings.diameter)
    if chosen:
        result = with_model(result, *chosen)
    return ImageOutcome(image, result, pixel, f" ({given.note})" if given.note else "")


def check_image_outputs(settings: SegmentSettings, stem: str) -> dict[str, Path]:
    """The image's output paths, refused at once if one exists (and no ``overwrite``)."""
    outs = outputs_for(settings, stem, slide=False)
    for out in outs.values():
        check_writable(out, settings.overwrite)
    return outs


def write_image(outcome: ImageOutcome, stem: str, settings: SegmentSettings,
                written: list[Path]) -> tuple[int, str]:
    """Write a segmented image's files; returns (nuclei, where they went). ``written`` lists
    the files as they appear, so a failure midway can remove them."""
    from sac.outputs.write import write_outputs

    outs = check_image_outputs(settings, stem)
    write_outputs(outs, outcome.image, outcome.result, outcome.pixel_size_um, stem,
                  settings.overwrite, written)
    res = outcome.result
    size = "" if res.size is None else res.size.describe()
    return res.n_nuclei, f"{outs['labels']}; {size}{outcome.note}"


def slide_segmenter(seg: AnySegmenter) -> Segmenter:
    """The segmenter a whole slide gets: ``--model auto`` reads slides as bright-field
    stains (:meth:`~sac.pipeline.choose.AutoSegmenter.for_slides`)."""
    from sac.pipeline.choose import AutoSegmenter

    return seg.for_slides() if isinstance(seg, AutoSegmenter) else seg


def process_slide(path: Path, stem: str, settings: SegmentSettings, seg: AnySegmenter,
                  progress: bool = True, select: Callable[[Any], bool] | None = None
                  ) -> tuple[int, str]:
    """Segment a whole slide in this process (``select``: only those chunks); returns
    (nuclei, summary)."""
    from sac.outputs.images import write_labels_tif
    from sac.slides.segment import segment_slide

    seg = slide_segmenter(seg)
    out_labels = outputs_for(settings, stem, slide=True).get("labels")  # --slide-labels
    if out_labels is not None:
        check_writable(out_labels, settings.overwrite)
    res = segment_slide(seg, path, settings.output, settings.slide,
                        return_labels=settings.slide_labels, progress=progress, select=select,
                        overwrite=settings.overwrite, scale=scale_request(settings), stem=stem)
    if res.labels is not None and out_labels is not None:
        res.outputs["labels"] = write_labels_tif(out_labels, res.labels, settings.overwrite,
                                                 res.pixel_size_um)
    return res.n_nuclei, describe_slide(res)


def describe_slide(res: Any) -> str:
    """The summary of a slide run: where the files went, or what is left to other shards."""
    if res.n_pending:
        return (f"{res.n_chunks - res.n_pending} of {res.n_chunks} chunks have parts, "
                f"{res.n_pending} left to other shards; the last shard (or sac merge-slide) "
                "writes the files")
    where = ", ".join(str(p) for p in res.outputs.values())
    size = "" if res.size is None else f"; {res.size.describe()}"
    return (f"{where} ({res.n_chunks} chunks, {res.n_skipped_no_tissue} without tissue, "
            f"{res.n_resumed} resumed){size}")


def process_input(path: Path, stem: str, settings: SegmentSettings, seg: AnySegmenter,
                  written: list[Path], progress: bool = True,
                  select: Callable[[Any], bool] | None = None) -> tuple[int, str]:
    """Segment one input and write its outputs in this process; returns (nuclei, where)."""
    if is_slide(path, settings):
        return process_slide(path, stem, settings, seg, progress, select)
    check_image_outputs(settings, stem)  # an existing output fails before the work
    return write_image(segment_image(path, stem, settings, seg), stem, settings, written)


def as_sac_error(exc: BaseException, path: Path | str, out: Path) -> SACError:
    """A message for the user from any failure of one input (write errors say which)."""
    if isinstance(exc, SACError):
        return exc
    if isinstance(exc, OSError):
        if exc.errno == errno.ENAMETOOLONG:
            return SACError(f"{path}: an output name is too long for the file system "
                            f"({exc.filename or 'its name'}); rename the input to something "
                            "shorter")
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


def named(name: str, exc: BaseException) -> str:
    """The message, with the input's name in front unless it already starts with it."""
    text = str(exc)
    return text if text.startswith(name) else f"{name}: {text}"
