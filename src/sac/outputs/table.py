"""Per-nucleus measurements as table rows, and writing them as CSV (for pandas, R, Excel).

Centroids use the array-index convention of the rest of SAC (and of numpy, scikit-image and
napari): the centre of pixel ``(r, c)`` is ``x = c, y = r``. (The polygon exports in
``sac.outputs.shapes`` use pixel corners instead, so there a pixel centre is at
``(c + 0.5, r + 0.5)``.)
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from sac.core.checks import check_pixel_size
from sac.core.errors import InputError
from sac.core.fileio import atomic_path
from sac.core.labels import compact_ids
from sac.outputs.shapes import check_labels

#: Columns of :func:`measure_nuclei` rows and of the CSV, in order.
CSV_COLUMNS = (
    "id",
    "centroid_x",
    "centroid_y",
    "area_px",
    "area_um2",
    "perimeter_px",
    "perimeter_um",
    "eccentricity",
    "mean_intensity",
    "score",
)


def _gray(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The image as float64 gray values: itself if 2-D, else the mean of its colour channels."""
    image = np.asarray(image)
    if image.shape[:2] != shape or image.ndim not in (2, 3):
        raise InputError(f"image shape {image.shape} does not match the labels' {shape}")
    if image.ndim == 3:
        channels = image[..., :3] if image.shape[2] == 4 else image  # drop alpha of RGBA
        return channels.mean(axis=2, dtype=np.float64)
    return image.astype(np.float64)


def measure_nuclei(
    labels: np.ndarray,
    image: np.ndarray | None = None,
    scores: Mapping[int, float] | None = None,
    pixel_size_um: float | None = None,
    offset: tuple[float, float] = (0.0, 0.0),
) -> list[dict[str, float | int | None]]:
    """One row (dict with :data:`CSV_COLUMNS`) per nucleus, sorted by id.

    ``id`` is the label; ``centroid_x/y`` are in pixels (pixel centres at integers, plus
    ``offset``); ``area_px`` is the label's pixel count (all its pieces); ``perimeter_px`` is
    scikit-image's boundary-length estimate (0 for a 1-pixel nucleus); ``eccentricity`` is that
    of the ellipse with the same second moments (0 = circle); ``mean_intensity`` is the mean
    over the nucleus of the image (the mean of its colour channels for RGB/RGBA, in the image's
    own units); ``score`` is ``scores[id]`` (e.g. SAM's predicted quality). The ``*_um*``
    columns need ``pixel_size_um``. Unknown values are None.
    """
    from skimage.measure import regionprops_table

    labels = check_labels(labels)
    size = check_pixel_size(pixel_size_um)
    if not labels.any():
        return []
    work, ids = compact_ids(labels)
    props = ["label", "centroid", "area", "perimeter", "eccentricity"]
    gray = None
    if image is not None:
        gray = _gray(image, labels.shape)
        props.append("intensity_mean")
    table = regionprops_table(work, intensity_image=gray, properties=props)
    ox, oy = float(offset[0]), float(offset[1])
    rows = []
    for i, label in enumerate(table["label"].tolist()):
        label = int(label) if ids is None else int(ids[label])
        area = int(table["area"][i])
        perimeter = float(table["perimeter"][i])
        score = None if scores is None else scores.get(label)
        rows.append({
            "id": label,
            "centroid_x": float(table["centroid-1"][i]) + ox,
            "centroid_y": float(table["centroid-0"][i]) + oy,
            "area_px": area,
            "area_um2": None if size is None else area * size * size,
            "perimeter_px": perimeter,
            "perimeter_um": None if size is None else perimeter * size,
            "eccentricity": float(table["eccentricity"][i]),
            "mean_intensity": None if gray is None else float(table["intensity_mean"][i]),
            "score": None if score is None else float(score),
        })
    return rows


def _cell(value: object) -> object:
    """CSV cell: empty for None/NaN, floats rounded to 6 decimals, anything else as is."""
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        return "" if not math.isfinite(value) else repr(round(float(value), 6))
    return value


def write_csv(
    path: str | Path, rows: Iterable[Mapping[str, object]], overwrite: bool = False
) -> Path:
    """Write measurement rows as a UTF-8 CSV with a header (header only when no rows).

    Columns are :data:`CSV_COLUMNS` (then any extra keys of the first row); missing or unknown
    values are empty cells.
    """
    rows = list(rows)
    columns = list(CSV_COLUMNS)
    if rows:
        columns += [key for key in rows[0] if key not in CSV_COLUMNS]
    path = Path(path)
    with atomic_path(path, overwrite) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(key)) for key in columns])
    return path
