"""QuPath GeoJSON: one detection per nucleus, its polygon(s) in pixel-corner coordinates
(:mod:`sac.outputs.shapes`), with measurements and a deterministic id.

A FeatureCollection QuPath imports as detections of class "Nucleus"; ids are uuid5 of
``"<id_namespace>/<label>"``, so the same nucleus of the same input gets the same id every run.
The file is streamed, so a whole slide's nuclei never have to be in memory at once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sac.core.checks import check_pixel_size
from sac.core.fileio import atomic_path
from sac.outputs.shapes import Shape, check_labels, label_shapes

#: QuPath classification given to every exported nucleus (name and RGB colour).
NUCLEUS_CLASS = {"name": "Nucleus", "color": [255, 255, 0]}
#: Namespace of the deterministic feature ids (uuid5 of ``"<id_namespace>/<label>"``).
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://segment-any-cell/nucleus")


def shape_geometry(shape: Shape | np.ndarray) -> dict[str, Any]:
    """A GeoJSON Polygon (one piece) or MultiPolygon for a :func:`label_shapes` shape (or a
    single exterior ring)."""
    if isinstance(shape, np.ndarray):
        shape = [[shape]]

    def coords(ring: Any) -> list[list[float | int]]:
        return [[_number(x), _number(y)] for x, y in np.asarray(ring).tolist()]

    polygons = [[coords(r) for r in polygon] for polygon in shape]
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygons[0]}
    return {"type": "MultiPolygon", "coordinates": polygons}


def feature_id(label: int, id_namespace: str = "") -> str:
    """Deterministic UUID string of a nucleus (same label and namespace, same id)."""
    return str(uuid.uuid5(UUID_NAMESPACE, f"{id_namespace}/{int(label)}"))


def _pixel_counts(labels: np.ndarray) -> dict[int, int]:
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist(), strict=True))


def _number(value: float) -> float | int:
    """A JSON-friendly number: ints stay ints, integral floats are written without '.0'."""
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def write_geojson(
    path: str | Path,
    labels: np.ndarray,
    offset: tuple[float, float] = (0.0, 0.0),
    scores: dict[int, float] | None = None,
    pixel_size_um: float | None = None,
    overwrite: bool = False,
    *,
    simplify: float = 0.0,
    id_namespace: str = "",
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write nuclei as a GeoJSON FeatureCollection that QuPath imports as detections.

    Follows QuPath's own GeoJSON (v0.4+; ``qupath.lib.io.PathObjectTypeAdapters``): each
    Feature has an ``id`` (a UUID, here uuid5 of ``"<id_namespace>/<label>"``, so reruns give
    the same ids; pass e.g. the image name to keep ids distinct across images), a Polygon
    geometry (with holes where the nucleus has them; a MultiPolygon for a label of several
    pieces, so that the area always equals the pixel count; pixel coordinates with the
    origin at the image's top-left corner, as QuPath uses) and properties
    ``objectType: "detection"``,
    ``classification: {"name": "Nucleus", "color": [r, g, b]}`` (QuPath only accepts a
    classification object that carries a colour) and numeric ``measurements``: ``label``,
    ``area_px`` (pixel count of the label), ``area_um2`` (when ``pixel_size_um`` is known) and
    ``score`` (when given for the label). No labels: an empty FeatureCollection.
    ``metadata`` (e.g. the scale used) goes into a top-level ``"sac"`` member, which GeoJSON
    readers ignore.
    """
    labels = check_labels(labels)
    size = check_pixel_size(pixel_size_um)
    counts = _pixel_counts(labels)
    scores = scores or {}
    features = (nucleus_feature(label, shape, counts[label], size, scores.get(label),
                                id_namespace)
                for label, shape in label_shapes(labels, offset, simplify))
    return write_feature_collection(path, features, overwrite, metadata)


def nucleus_feature(label: int, shape: Shape | np.ndarray, area_px: float,
                    pixel_size_um: float | None, score: float | None, id_namespace: str = ""
                    ) -> dict[str, Any]:
    """One QuPath detection Feature (see :func:`write_geojson`); ``shape`` as from
    :func:`label_shapes`, or one exterior ring."""
    measurements: dict[str, float | int] = {"label": int(label), "area_px": _number(area_px)}
    if pixel_size_um is not None:
        measurements["area_um2"] = float(area_px) * pixel_size_um * pixel_size_um
    if score is not None and np.isfinite(score):
        measurements["score"] = float(score)
    return {
        "type": "Feature",
        "id": feature_id(int(label), id_namespace),
        "geometry": shape_geometry(shape),
        "properties": {
            "objectType": "detection",
            "classification": NUCLEUS_CLASS,
            "measurements": measurements,
        },
    }


def write_feature_collection(path: str | Path, features: Iterable[dict[str, Any]],
                             overwrite: bool = False, metadata: dict[str, Any] | None = None
                             ) -> Path:
    """Stream Features into a GeoJSON FeatureCollection file, atomically (``metadata`` as a
    top-level ``"sac"`` member)."""
    path = Path(path)
    head = '{"type": "FeatureCollection", '
    if metadata:
        head += f'"sac": {json.dumps(metadata, separators=(",", ":"))}, '
    with atomic_path(path, overwrite) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(head + '"features": [')
        for i, feature in enumerate(features):
            fh.write(("," if i else "") + "\n" + json.dumps(feature, separators=(",", ":")))
        fh.write("\n]}\n")
    return path
