"""Nucleus outlines as polygons, the geometry that QuPath GeoJSON and ImageJ ROI zips carry
(:mod:`sac.outputs.geojson`, :mod:`sac.outputs.rois`).

Coordinate convention (shared by every function here, and by QuPath and ImageJ): ``x`` is the
column and ``y`` the row, in pixels, with the origin at the top-left *corner* of the image, so
pixel ``(r, c)`` covers ``[c, c + 1) x [r, r + 1)`` and its centre is ``(c + 0.5, r + 0.5)``.
An outline therefore runs along pixel edges and encloses exactly the pixels of its nucleus
(the polygon's area equals the pixel count). Note that ``sac.outputs.table`` reports centroids
in the array-index convention (pixel centres at integers), i.e. 0.5 less than in this convention.

For a region of a slide, ``offset = (x0, y0)`` (the region's top-left corner in slide pixels) is
added to every coordinate.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from sac.core.labels import check_label_image, compact_ids, largest_component

#: 4-connectivity.
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


def check_labels(labels: np.ndarray) -> np.ndarray:
    """Validate an instance-label image to write: 2-D, integer (or a bool mask), ids >= 0."""
    return check_label_image(labels, "labels", bool_ok=True, squeeze=False)


def iter_objects(
    labels: np.ndarray,
) -> Iterator[tuple[int, np.ndarray, int, tuple[slice, slice]]]:
    """Yield ``(label id, image, value, bounding-box slices)`` per object, by increasing id.

    ``image[slices] == value`` is the object's mask in its box (``image`` is ``labels`` or its
    compacted copy, see :func:`compact_ids`).
    """
    from scipy import ndimage

    work, ids = compact_ids(check_labels(labels))
    for i, box in enumerate(ndimage.find_objects(work), start=1):
        if box is not None:
            yield (i if ids is None else int(ids[i])), work, i, box


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixel-edge outline ``(n, 2)`` as (row, col) corners of a padded mask's main piece.

    The piece is the largest 4-connected component with its holes filled. Such a set has a
    single boundary that never touches itself (a diagonal "pinch" would enclose a hole), so the
    traced ring is a valid simple polygon. Marching squares at level 0.5 visits the midpoints of
    the boundary's pixel edges in order; consecutive midpoints meet at a pixel corner, which is
    their mean rounded to the nearest integer (after shifting to edge coordinates).
    """
    from scipy import ndimage
    from skimage.measure import find_contours

    mask = largest_component(mask, _CROSS)
    outside, n_bg = ndimage.label(~mask, _CROSS)
    if n_bg > 1:  # holes: background not 4-connected to the (padded) border
        mask = outside != outside[0, 0]
    contours = find_contours(mask.astype(np.float64), 0.5)
    mids = max(contours, key=len)[:-1] + 0.5  # crack midpoints, edge coordinates
    corners = np.rint((mids + _next(mids)) / 2)
    step = _next(corners) - corners  # step k goes from corner k to corner k + 1
    prev = np.concatenate((step[-1:], step[:-1]))
    turns = prev[:, 0] * step[:, 1] - prev[:, 1] * step[:, 0] != 0
    return corners[turns]


def _next(a: np.ndarray) -> np.ndarray:
    """Rows shifted by one: ``out[k] = a[(k + 1) % n]``."""
    return np.concatenate((a[1:], a[:1]))


def _ring(corners_rc: np.ndarray, origin: tuple[float, float], simplify: float) -> np.ndarray:
    """Closed (x, y) ring, counter-clockwise in a y-up frame (positive shoelace area)."""
    xy = corners_rc[:, ::-1].astype(np.float64)
    x, y = xy[:, 0], xy[:, 1]
    x1, y1 = _next(xy).T
    if np.dot(x, y1) - np.dot(x1, y) < 0:
        xy = xy[::-1]
    if simplify > 0 and len(xy) > 4:
        from shapely.geometry import Polygon

        simple = Polygon(xy).simplify(simplify, preserve_topology=True)
        xy = np.asarray(simple.exterior.coords, np.float64)[:-1]
        if simple.exterior.is_ccw is False:
            xy = xy[::-1]
    xy = xy + np.asarray(origin, np.float64)
    return np.vstack([xy, xy[:1]])


def label_polygons(
    labels: np.ndarray, offset: tuple[float, float] = (0.0, 0.0), simplify: float = 0.0
) -> list[tuple[int, np.ndarray]]:
    """One closed outer polygon ``(n + 1, 2)`` of (x, y) per label id, sorted by id.

    Coordinates follow the pixel-edge convention of the module docstring, plus ``offset``
    (x, y). Each ring is closed (first == last), has at least 5 points (a 1-pixel nucleus is a
    unit square; 4 after ``simplify``), no collinear vertices, positive shoelace area, and is a
    valid simple polygon.
    A label with several 4-connected pieces gives the outline of its largest piece; holes are
    filled. With ``simplify > 0`` (pixels) the ring is simplified by Douglas-Peucker with
    topology preserved (needs shapely); with 0 it outlines the pixels exactly.
    """
    out = []
    ox, oy = float(offset[0]), float(offset[1])
    for label, image, value, (rows, cols) in iter_objects(labels):
        r0, r1, c0, c1 = rows.start, rows.stop, cols.start, cols.stop
        mask = np.zeros((r1 - r0 + 2, c1 - c0 + 2), bool)
        mask[1:-1, 1:-1] = image[r0:r1, c0:c1] == value
        corners = _outline(mask)
        out.append((label, _ring(corners, (ox + c0 - 1, oy + r0 - 1), simplify)))
    return out


Shape = list[list[np.ndarray]]  # polygons, each [exterior ring, hole rings...]


def label_shapes(
    labels: np.ndarray, offset: tuple[float, float] = (0.0, 0.0), simplify: float = 0.0
) -> list[tuple[int, Shape]]:
    """The exact geometry of each label, sorted by id: one polygon per 4-connected piece, each
    ``[exterior, hole, ...]`` as closed (x, y) rings (exteriors counter-clockwise in a y-up
    frame, holes the other way). Without ``simplify`` the areas add up to the label's pixel
    count; pieces touching at a corner are separate polygons (a GeoJSON MultiPolygon)."""
    from scipy import ndimage

    out = []
    ox, oy = float(offset[0]), float(offset[1])
    for label, image, value, (rows, cols) in iter_objects(labels):
        r0, c0 = rows.start, cols.start
        mask = np.zeros((rows.stop - r0 + 2, cols.stop - c0 + 2), bool)
        mask[1:-1, 1:-1] = image[rows, cols] == value
        origin = (ox + c0 - 1, oy + r0 - 1)
        pieces, n = ndimage.label(mask, _CROSS)
        shape: Shape = []
        for k in range(1, n + 1):
            piece = pieces == k
            rings = [_ring(_outline(piece), origin, simplify)]
            outside, n_bg = ndimage.label(~piece, _CROSS)
            for h in range(1, n_bg + 1):
                if h != outside[0, 0]:  # background not 4-connected to the padded border
                    rings.append(_ring(_outline(outside == h), origin, simplify)[::-1])
            shape.append(rings)
        out.append((label, shape))
    return out
