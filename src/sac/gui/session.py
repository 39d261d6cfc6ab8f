"""What the plugin's widgets do, without Qt: load models, segment with progress and
cancelling, list the prompts SAC chose, write the outputs, and the sample image.

Kept apart from the widgets so it is tested and reused directly; the widgets only move values
between these functions and napari layers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sac.core.errors import SACError

if TYPE_CHECKING:
    from sac.pipeline.segmenter import AnySegmenter, Segmenter

#: model folders fine-tuned in this session (Train widget), newest last
TRAINED: list[str] = []
#: callbacks told of each newly trained model folder (the widgets' model lists)
MODEL_LISTENERS: list[Callable[[str], None]] = []


def shipped_names() -> list[str]:
    """The widgets' model lists: ``auto`` (per image, the shipped specialist for its type)
    and the models installed with the package, the default of ``sac segment`` first, then the
    others by name (a newly shipped model appears by itself), then the models fine-tuned in
    this session."""
    from sac.model import shipped_models
    from sac.pipeline.choose import AUTO, DEFAULT_MODEL

    return sorted([AUTO, *shipped_models()],
                  key=lambda n: (n != DEFAULT_MODEL, n != AUTO, n)) + TRAINED


def add_trained(folder: str) -> None:
    """Make a fine-tuned model folder a choice in every model list, now."""
    if folder not in TRAINED:
        TRAINED.append(folder)
        for tell in list(MODEL_LISTENERS):
            try:
                tell(folder)
            except RuntimeError:  # its widget was closed (Qt deleted it)
                MODEL_LISTENERS.remove(tell)


def fine_tune(pairs: list[tuple[np.ndarray, np.ndarray]], base: str, run_dir: Path,
              cancel: threading.Event | None = None,
              progress: Callable[[int, int], None] | None = None,
              say: Callable[[str], None] | None = None, **options: Any) -> Path:
    """Fine-tune ``base`` on (image, labels) pairs with ``sac train --from``'s few-shot
    schedule; returns the new model folder (``run_dir/run/model``). The pairs are written to
    ``run_dir/data`` as an images/ + labels/ folder (kept, so the run can be repeated with
    ``sac train``). ``cancel`` set by another thread stops at the next step (raising
    :class:`Cancelled`; the run folder is kept and resumable), ``progress(step, total)``
    hears of each step; ``options`` go to :func:`sac.train`."""
    import tifffile

    from sac.training.run import train

    if not pairs:
        raise Cancelled("no image/labels pairs to train on")
    data = run_dir / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    (data / "labels").mkdir(exist_ok=True)
    for i, (image, labels) in enumerate(pairs):
        if np.asarray(labels).shape != np.asarray(image).shape[:2]:
            raise Cancelled(f"pair {i + 1}: labels {np.asarray(labels).shape} do not match "
                            f"the image {np.asarray(image).shape[:2]}")
        tifffile.imwrite(data / "images" / f"layer{i:03d}.tif", np.asarray(image))
        tifffile.imwrite(data / "labels" / f"layer{i:03d}.tif",
                         np.asarray(labels).astype(np.uint32))

    def step(done: int, total: int, loss: dict[str, float]) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if progress is not None:
            progress(done, total)

    result = train(data, run_dir / "run", init=base, quiet=True, on_step=step,
                   say=say or (lambda message: None), **options)
    return result.model_dir


def concrete(seg: AnySegmenter, image: np.ndarray) -> tuple[Segmenter, str | None]:
    """The segmenter that works on ``image`` and, for ``auto``, the model it chose."""
    from sac.pipeline.choose import concrete as for_image

    return for_image(seg, image, "layer")


class Cancelled(SACError):
    """The user stopped a run; nothing was added or written."""


def segmenter(model: str, device: str = "cpu", precision: str = "auto",
              tile_size: int | None = None, fill: bool = True) -> AnySegmenter:
    """A segmenter for these settings, loaded once per session and then reused (the click
    corrector's embedding cache is keyed by it): the process's one model cache,
    :func:`sac.batch.settings.cached_segmenter`. ``fill=False``: no completion from the
    semantic mask (``sac segment --no-fill``), for images unlike the model's training data."""
    from sac.batch.settings import SegmentSettings, cached_segmenter
    from sac.pipeline.options import SegmentOptions

    options = SegmentOptions(precision=precision, tile_size=tile_size, fill=fill)
    return cached_segmenter(SegmentSettings(output=Path("."), model=str(model), device=device,
                                            options=options))


@dataclass
class SegmentOutput:
    """What a Segment run adds to the viewer."""

    labels: np.ndarray
    semantic: np.ndarray | None
    scores: dict[int, float]
    scale: float
    positives: np.ndarray  # (N, 2) row, col in image pixels
    negatives: np.ndarray
    model: str | None = None  # the model ``auto`` chose for this image


def segment(seg: AnySegmenter, image: np.ndarray, scale: float | None = None,
            semantic: bool = False,
            prompts: bool = False, cancel: threading.Event | None = None,
            progress: Callable[[str, int, int], None] | None = None,
            pixel_size: float | None = None, file_pixel_size: float | None = None
            ) -> SegmentOutput:
    """Segment ``image``; ``cancel`` set by another thread stops the run at the next step
    (raising :class:`Cancelled`), ``progress(stage, done, total)`` hears of each step.
    ``scale`` or ``pixel_size`` (um per image pixel) set the resampling, as ``sac segment``'s
    options do; with neither, the file's own ``file_pixel_size`` (a slide's) sets it as in
    ``sac segment`` when the model records its pixel size, else it is estimated."""
    from sac.pipeline.scale import ScaleRequest

    seg, chosen = concrete(seg, image)
    request = ScaleRequest(scale, None if scale is not None else pixel_size,
                           file_pixel_size=file_pixel_size)

    def report(stage: str, done: int, total: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if progress is not None:
            progress(stage, done, total)

    res = seg.segment(image, "layer", scale=request, semantic=semantic, progress=report)
    report("done", 1, 1)
    used = res.size.scale if res.size is not None else seg.config.input_scale
    pos = neg = np.zeros((0, 2), np.float32)
    if prompts:
        pos, neg = prompt_points(seg, image, used)
    return SegmentOutput(res.labels, res.semantic, res.scores, used, pos, neg, chosen)


def prompt_points(seg: Segmenter, image: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The positive and negative points of SAC's instance prompt sets, (row, col) in image
    pixels, as the generator chose them at ``scale``."""
    from sac.core.images import as_model_rgb
    from sac.pipeline.nuclei import detect
    from sac.pipeline.prompt_sets import instance_sets

    _, maps, _ = seg.scaled_maps(as_model_rgb(image, "layer"), scale)
    det = detect(maps, seg.thresholds)
    sets = instance_sets(det, maps, seg.config.prompts)
    pts = [(s.points, s.labels) for s in sets if len(s.points)]
    if not pts:
        empty = np.zeros((0, 2), np.float32)
        return empty, empty
    xy = np.concatenate([p for p, _ in pts]) / scale
    lab = np.concatenate([lb for _, lb in pts])
    rc = xy[:, ::-1].astype(np.float32)
    neg = np.unique(rc[lab == 0], axis=0)  # neighbours' centres repeat across sets
    return rc[lab == 1], neg


def refine(seg: AnySegmenter, image: np.ndarray, labels: np.ndarray, repair: bool = True
           ) -> tuple[np.ndarray, str]:
    """SAM's outlines for the nuclei of a Labels layer (``sac refine``; ``repair=False``:
    ``--keep-objects``), ids kept; the new labels and a one-line summary."""
    from sac.pipeline.refine import RefineSettings, refine_labels

    seg, _ = concrete(seg, image)
    out = refine_labels(seg, image, np.asarray(labels), RefineSettings(repair=repair))
    return out.labels, out.summary()


def export(labels: np.ndarray, image: np.ndarray | None, folder: Path, stem: str,
           kinds: list[str], pixel_size_um: float | None = None, overwrite: bool = False,
           scores: dict[int, float] | None = None) -> list[Path]:
    """Write a Labels layer with ``sac segment``'s writers (label TIFF, GeoJSON, ImageJ ROIs,
    CSV: ``kinds`` of ``labels``/``geojson``/``rois``/``csv``); returns the files. Nothing is
    half-written: every file goes through a temporary name, and a failure removes the files
    of this export already written."""
    from sac.core.fileio import check_output_folder, check_writable
    from sac.core.labels import check_label_image
    from sac.outputs.kinds import output_paths
    from sac.outputs.write import write_outputs
    from sac.pipeline.result import SegmentResult

    lab = check_label_image(np.asarray(labels), stem).astype(np.uint32)
    if image is None:  # the CSV's intensities need an image: a blank one says nothing
        image = np.zeros((*lab.shape, 3), np.uint8)
    check_output_folder(folder)
    paths = output_paths(folder, stem, kinds)
    for p in paths.values():
        check_writable(p, overwrite)
    written: list[Path] = []
    result = SegmentResult(lab, None, dict(scores or {}), int(lab.max()))
    try:
        write_outputs(paths, np.asarray(image), result, pixel_size_um, stem, overwrite,
                      written)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return written


def ihc_sample_data() -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """napari sample: scikit-image's IHC colon image (the demo's), to try the plugin on."""
    from sac.data.samples import ihc_sample

    return [(ihc_sample(), {"name": "IHC sample"}, "image")]
