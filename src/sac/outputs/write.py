"""All the files of one segmented image, written the way ``sac segment`` writes them.

The label TIFF always; on request the semantic mask and outline overlay (PNG), QuPath GeoJSON,
ImageJ ROIs and the per-nucleus CSV. Every file is written atomically and never silently
overwritten. The CSV rows and the GeoJSON metadata record how the image was resampled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_outputs(paths: dict[str, Path], image: np.ndarray, result: Any,
                  pixel_size_um: float | None, stem: str, overwrite: bool = False,
                  written: list[Path] | None = None) -> list[Path]:
    """Write each output of ``paths`` (kinds of :data:`sac.core.fileio.OUTPUT_ENDINGS`) for a
    :class:`~sac.pipeline.result.SegmentResult` of ``image``; returns (and appends to
    ``written``, as it goes) the files written, so a failure midway leaves a list of what
    exists."""
    from sac.outputs.images import write_labels_tif

    written = [] if written is None else written
    if "labels" in paths:
        written.append(write_labels_tif(paths["labels"], result.labels, overwrite,
                                        pixel_size_um))
    if "semantic" in paths and result.semantic is not None:
        from sac.outputs.images import write_png

        written.append(write_png(paths["semantic"], result.semantic.astype("uint8") * 255,
                                 overwrite))
    if "overlay" in paths:
        from sac.core.images import to_rgb_float
        from sac.outputs.images import outline_overlay, write_png

        written.append(write_png(paths["overlay"],
                                 outline_overlay(to_rgb_float(image), result.labels), overwrite))
    if "geojson" in paths:
        from sac.outputs.geojson import write_geojson

        meta = None if result.size is None else {"size": result.size.to_dict()}
        written.append(write_geojson(paths["geojson"], result.labels, scores=result.scores,
                                     pixel_size_um=pixel_size_um, overwrite=overwrite,
                                     id_namespace=stem, metadata=meta))
    if "rois" in paths:
        from sac.outputs.rois import write_imagej_rois

        written.append(write_imagej_rois(paths["rois"], result.labels, overwrite=overwrite))
    if "csv" in paths:
        from sac.outputs.table import measure_nuclei, write_csv

        rows = measure_nuclei(result.labels, image, result.scores, pixel_size_um)
        if result.size is not None:  # how the image was scaled, on every row
            extra = {"resampled_by": round(result.size.scale, 5),
                     "estimated_diameter_px": None if result.size.diameter is None
                     else round(result.size.diameter, 2)}
            rows = [{**r, **extra} for r in rows]
        written.append(write_csv(paths["csv"], rows, overwrite))
    return written
