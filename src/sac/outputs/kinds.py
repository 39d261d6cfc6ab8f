"""Every kind of file SAC writes per input, declared once: its ending, what it holds, where it
is offered and how it is written.

``sac segment``'s ``--save-*`` flags, the batch settings, whole slides, ``sac refine`` and the
napari Export widget all read :data:`KINDS`; adding an export format is one entry here and its
writer function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sac.pipeline.result import SegmentResult

#: a writer: (path, image, result, pixel size in um or None, stem, overwrite) -> the file
Writer = Callable[[Path, np.ndarray, Any, "float | None", str, bool], Path]


@dataclass(frozen=True)
class OutputKind:
    """One kind of output file."""

    name: str
    ending: str  # the file is <stem><ending>
    what: str  # what it holds, for help texts
    label: str  # its name in the GUI
    write: Writer
    slide: bool = False  # written for whole slides too (streamed by sac.slides)
    image_file: bool = False  # an image: files named like it are not read as inputs
    needs_semantic: bool = False  # only where the semantic mask was computed
    gui_export: bool = True  # offered by the napari Export widget (a layer's nuclei)


def _labels(path: Path, image: np.ndarray, result: SegmentResult,
            pixel: float | None, stem: str, overwrite: bool) -> Path:
    from sac.outputs.images import write_labels_tif

    return write_labels_tif(path, result.labels, overwrite, pixel)


def _semantic(path: Path, image: np.ndarray, result: SegmentResult,
              pixel: float | None, stem: str, overwrite: bool) -> Path:
    from sac.outputs.images import write_png

    assert result.semantic is not None  # write_outputs skips this kind without one
    return write_png(path, result.semantic.astype("uint8") * 255, overwrite)


def _overlay(path: Path, image: np.ndarray, result: SegmentResult,
             pixel: float | None, stem: str, overwrite: bool) -> Path:
    from sac.core.images import to_rgb_float
    from sac.outputs.images import outline_overlay, write_png

    return write_png(path, outline_overlay(to_rgb_float(image), result.labels), overwrite)


def _geojson(path: Path, image: np.ndarray, result: SegmentResult,
             pixel: float | None, stem: str, overwrite: bool) -> Path:
    from sac.outputs.geojson import write_geojson

    meta = None if result.size is None else {"size": result.size.to_dict()}
    return write_geojson(path, result.labels, scores=result.scores, pixel_size_um=pixel,
                         overwrite=overwrite, id_namespace=stem, metadata=meta)


def _rois(path: Path, image: np.ndarray, result: SegmentResult,
          pixel: float | None, stem: str, overwrite: bool) -> Path:
    from sac.outputs.rois import write_imagej_rois

    return write_imagej_rois(path, result.labels, overwrite=overwrite)


def _csv(path: Path, image: np.ndarray, result: SegmentResult,
         pixel: float | None, stem: str, overwrite: bool) -> Path:
    from sac.outputs.table import measure_nuclei, write_csv

    rows = measure_nuclei(result.labels, image, result.scores, pixel)
    if result.size is not None:  # how the image was scaled, on every row
        extra = {"resampled_by": round(result.size.scale, 5),
                 "estimated_diameter_px": None if result.size.diameter is None
                 else round(result.size.diameter, 2)}
        rows = [{**r, **extra} for r in rows]
    return write_csv(path, rows, overwrite)


#: every output kind, by name, in the order files are written
KINDS: dict[str, OutputKind] = {k.name: k for k in (
    OutputKind("labels", "_labels.tif", "the instance labels (uint16/uint32 TIFF)",
               "label TIFF", _labels, slide=True, image_file=True),
    OutputKind("semantic", "_semantic.png", "the one-prompt-set-per-tile mask (0/255 PNG)",
               "semantic mask", _semantic, image_file=True, needs_semantic=True,
               gui_export=False),
    OutputKind("overlay", "_overlay.png", "the image with nucleus outlines (PNG)",
               "outline overlay", _overlay, image_file=True, gui_export=False),
    OutputKind("geojson", ".geojson", "nucleus polygons QuPath imports as detections",
               "QuPath GeoJSON", _geojson, slide=True),
    OutputKind("rois", "_rois.zip", "one ImageJ polygon ROI per nucleus", "ImageJ ROIs",
               _rois),
    OutputKind("csv", "_nuclei.csv", "id, centroid, area, perimeter, eccentricity, mean "
               "intensity, predicted quality", "CSV table", _csv, slide=True),
)}
#: kinds written on request (the label TIFF always is)
OPTIONAL = tuple(k for k in KINDS if k != "labels")
#: endings of SAC's image outputs, which a folder of inputs is not read from
IMAGE_ENDINGS = tuple(k.ending for k in KINDS.values() if k.image_file)


def output_paths(folder: Path, stem: str, kinds: list[str] | tuple[str, ...]
                 ) -> dict[str, Path]:
    """``folder/<stem><ending>`` for each kind asked for."""
    return {k: folder / f"{stem}{KINDS[k].ending}" for k in kinds}
