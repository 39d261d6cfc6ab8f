"""ImageJ / Fiji ROI sets: one polygon ROI per nucleus in a zip (the ROI Manager opens it),
outlines along pixel edges (:mod:`sac.outputs.shapes`). Needs ``roifile`` (the ``formats``
extra)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from sac.core.fileio import atomic_path
from sac.outputs.shapes import check_labels, label_polygons


def roi_name(label: int, width: int = 4) -> str:
    """ImageJ ROI name of a nucleus, e.g. ``nucleus-0007``."""
    return f"nucleus-{int(label):0{width}d}"


def write_imagej_rois(
    path: str | Path,
    labels: np.ndarray,
    offset: tuple[float, float] = (0.0, 0.0),
    overwrite: bool = False,
    *,
    simplify: float = 0.0,
) -> Path:
    """Write an ImageJ/Fiji ROI Manager zip: one polygon ROI per nucleus, named by label.

    Vertices are the outline's pixel corners (ImageJ uses the same pixel-edge convention, so an
    integer polygon outlines whole pixels); the closing vertex is implicit. Integer vertices are
    stored as integers; fractional ones (a fractional offset or ``simplify``) and coordinates
    beyond ImageJ's 16-bit range use ImageJ's sub-pixel (float32) coordinates. Names are
    ``nucleus-<label>`` zero-padded to at least 4 digits, also used as the ``.roi`` entry
    names. No labels: a valid zip with no entries (Fiji then reports no ROIs).
    """
    from roifile import ROI_TYPE, ImagejRoi

    labels = check_labels(labels)
    polygons = label_polygons(labels, offset, simplify)
    width = max(4, len(str(int(labels.max(initial=0)))))
    path = Path(path)
    with atomic_path(path, overwrite) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for label, ring in polygons:
            points = ring[:-1]
            if np.array_equal(points, np.round(points)):
                points = points.astype(np.int64)
            roi = ImagejRoi.frompoints(points, name=roi_name(label, width))
            roi.roitype = ROI_TYPE.POLYGON
            zf.writestr(f"{roi.name}.roi", roi.tobytes())
    return path
