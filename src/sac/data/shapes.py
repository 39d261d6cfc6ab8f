"""Instance labels from another tool's files: label images, QuPath GeoJSON, ImageJ ROI sets.

Outlines are read in the pixel-corner convention SAC writes them in (:mod:`sac.outputs.shapes`;
QuPath and ImageJ use it too): a pixel belongs to a nucleus when its centre lies inside the
polygon, so SAC's own GeoJSON and ROI files read back to exactly the labels they came from.
Ids come from the file where it has them (a GeoJSON ``label`` measurement, a ROI named
``nucleus-0007``), else in file order; where outlines overlap the earlier one keeps the pixels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sac.core.errors import ConfigError, InputError

#: file endings read by :func:`read_label_file`, by reader
LABEL_FILE_KINDS = {"image": (".tif", ".tiff", ".png"), "geojson": (".geojson", ".json"),
                    "rois": (".zip", ".roi")}


def read_label_file(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """uint32 instance labels of an image of ``shape`` (H, W) from a label image, a GeoJSON
    file of polygons, or an ImageJ ROI file or zip; raises :class:`InputError` naming the file
    on anything unreadable."""
    from sac.data.images import check_same_size, read_labels

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such labels file")
    suffix = path.suffix.lower()
    if suffix in LABEL_FILE_KINDS["image"]:
        labels = read_labels(path)
        check_same_size(np.zeros(shape, np.uint8), labels, "the image", path)
        return labels
    if suffix in LABEL_FILE_KINDS["geojson"]:
        return rasterise(geojson_polygons(path), shape, path)
    if suffix in LABEL_FILE_KINDS["rois"]:
        return rasterise(imagej_polygons(path), shape, path)
    endings = ", ".join(e for v in LABEL_FILE_KINDS.values() for e in v)
    raise InputError(f"{path}: labels must be a label image or outlines ({endings})")


Polygon = list[np.ndarray]  # exterior ring, then holes; (N, 2) x, y pixel-corner coordinates


def geojson_polygons(path: Path) -> Iterator[tuple[int | None, list[Polygon]]]:
    """``(id or None, polygons)`` per Feature of a GeoJSON file (QuPath's export or SAC's)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable GeoJSON file ({exc})") from None
    features = doc.get("features") if isinstance(doc, dict) else doc
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    if not isinstance(features, list):
        raise InputError(f"{path}: expected a FeatureCollection or a list of Features")
    for i, feature in enumerate(features):
        try:
            geometry = feature["geometry"]
            kind, coords = geometry["type"], geometry["coordinates"]
            parts = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else None
            if parts is None:
                continue  # points, lines: no area to label
            polygons = [[np.asarray(ring, np.float64)[:, :2] for ring in p] for p in parts]
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise InputError(f"{path}: feature {i} has no usable polygon geometry "
                             f"({type(exc).__name__}: {exc})") from None
        yield _feature_label(feature), polygons


def _feature_label(feature: dict[str, Any]) -> int | None:
    props = feature.get("properties") or {}
    measurements = props.get("measurements") or {}
    if isinstance(measurements, list):  # older QuPath: [{"name": ..., "value": ...}]
        measurements = {m.get("name"): m.get("value") for m in measurements
                        if isinstance(m, dict)}
    value = measurements.get("label", props.get("label"))
    return int(value) if isinstance(value, int | float) and value >= 1 else None


def imagej_polygons(path: Path) -> Iterator[tuple[int | None, list[Polygon]]]:
    """``(id or None, polygons)`` per area ROI of an ImageJ ``.roi`` file or ROI Manager zip;
    needs ``roifile`` (the ``formats`` extra)."""
    try:
        from roifile import ImagejRoi
    except ImportError:
        raise ConfigError("reading ImageJ ROIs needs roifile: pip install "
                          "'segment-any-cell[formats]'") from None
    try:
        rois = ImagejRoi.fromfile(path)
    except Exception as exc:  # roifile raises plain ValueErrors and struct errors
        raise InputError(f"{path}: not a readable ImageJ ROI file ({exc})") from None
    for roi in rois if isinstance(rois, list) else [rois]:
        points = np.asarray(roi.coordinates(), np.float64)
        if points.ndim != 2 or len(points) < 3:
            continue  # points, lines
        match = re.search(r"(\d+)$", roi.name or "")
        yield (int(match.group(1)) if match and int(match.group(1)) > 0 else None), [[points]]


def rasterise(shapes: Iterable[tuple[int | None, list[Polygon]]], shape: tuple[int, int],
              path: Path) -> np.ndarray:
    """Label image of ``shapes``: each pixel whose centre lies in an exterior ring and in
    none of its holes; ids from the shapes or numbered after the largest given."""
    from skimage.draw import polygon as fill

    items = list(shapes)
    given = [k for k, _ in items if k is not None]
    if len(set(given)) != len(given):
        given, items = [], [(None, p) for _, p in items]  # repeated ids: number in order
    nxt = max(given, default=0) + 1
    labels = np.zeros(shape, np.uint32)
    for key, polygons in items:
        if key is None:
            key, nxt = nxt, nxt + 1
        for rings in polygons:  # drawn on the exterior's box only, not the whole image
            x0, y0 = np.floor(rings[0].min(0)).astype(int).clip(0)
            x1, y1 = np.ceil(rings[0].max(0)).astype(int)
            y1, x1 = min(y1, shape[0]), min(x1, shape[1])
            if y1 <= y0 or x1 <= x0:
                continue  # outside the image
            mask = np.zeros((y1 - y0, x1 - x0), bool)
            for j, ring in enumerate(rings):
                rr, cc = fill(ring[:, 1] - 0.5 - y0, ring[:, 0] - 0.5 - x0, mask.shape)
                mask[rr, cc] = j == 0  # holes clear what the exterior filled
            view = labels[y0:y1, x0:x1]
            view[mask & (view == 0)] = key
    if not labels.any():
        raise InputError(f"{path}: no outline falls inside the {shape[1]} x {shape[0]} image; "
                         "check that the file belongs to this image")
    return labels
