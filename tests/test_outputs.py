"""Per-image output formats: polygons, QuPath GeoJSON, ImageJ ROI zips, CSV, TIFF pixel size."""

from __future__ import annotations

import csv
import json
import uuid
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from sac.core.errors import ConfigError, InputError
from sac.data.images import read_pixel_size_um
from sac.outputs.geojson import feature_id, write_geojson
from sac.outputs.images import write_labels_tif
from sac.outputs.rois import write_imagej_rois
from sac.outputs.shapes import label_polygons
from sac.outputs.table import CSV_COLUMNS, measure_nuclei, write_csv

shapely = pytest.importorskip("shapely")
roifile = pytest.importorskip("roifile")
from shapely.geometry import Polygon, shape  # noqa: E402


def scene() -> np.ndarray:
    """40x50 labels with awkward cases; non-contiguous ids 3, 70, 65535 among them."""
    lab = np.zeros((40, 50), np.uint16)
    yy, xx = np.mgrid[:40, :50]
    lab[(yy - 12) ** 2 + (xx - 14) ** 2 <= 36] = 3  # disc
    lab[0:5, 40:50] = 70  # touches the top and right borders
    lab[20, 30] = 65535  # a single pixel
    lab[25:38, 2] = 8  # a 1-pixel-wide vertical line on the left border
    lab[30:32, 10:25] = 9  # thin bar
    lab[33:40, 30:32] = 10  # L shape touching the bottom border
    lab[38:40, 32:45] = 10
    lab[22:25, 40:43] = 11  # pixels meeting only diagonally belong to the 4-connected blob
    lab[25, 43] = 11  # ... this diagonal pixel is a second, smaller piece
    return lab


def solid_ids(lab: np.ndarray) -> list[int]:
    """Labels that are one 4-connected piece without holes."""
    out = []
    for i in np.unique(lab[lab > 0]):
        mask = lab == i
        if ndimage.label(mask)[1] == 1 and (ndimage.binary_fill_holes(mask) == mask).all():
            out.append(int(i))
    return out


def check_ring(ring: np.ndarray) -> Polygon:
    assert ring.ndim == 2 and ring.shape[1] == 2 and len(ring) >= 5
    assert np.array_equal(ring[0], ring[-1])
    poly = Polygon(ring)
    assert poly.is_valid and poly.exterior.is_simple
    return poly


def test_polygons_outline_the_pixels_exactly():
    lab = scene()
    polys = label_polygons(lab)
    ids = [i for i, _ in polys]
    assert ids == sorted(np.unique(lab[lab > 0]).tolist()) == [3, 8, 9, 10, 11, 70, 65535]
    solid = solid_ids(lab)
    assert set(solid) == set(ids) - {11}
    for label, ring in polys:
        poly = check_ring(ring)
        assert poly.exterior.is_ccw  # positive shoelace area (RFC 7946 exterior ring)
        mask = lab == label
        if label in solid:
            assert poly.area == mask.sum()
            rows, cols = np.nonzero(mask)
            assert poly.bounds == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
            # every pixel centre (c + 0.5, r + 0.5) is inside exactly when the pixel is the label
            yy, xx = np.mgrid[: lab.shape[0], : lab.shape[1]]
            inside = shapely.contains_xy(poly, xx.ravel() + 0.5, yy.ravel() + 0.5)
            assert np.array_equal(inside.reshape(lab.shape), mask)
    rings = dict(polys)
    assert rings[65535][:-1].tolist() == [[30, 21], [30, 20], [31, 20], [31, 21]]
    assert Polygon(rings[11]).area == 9  # label 11's larger piece (3x3), not the diagonal pixel


def test_polygons_of_random_blobs_are_valid():
    """Noise masks full of diagonal pinches, holes and several pieces still give valid rings."""
    rng = np.random.default_rng(0)
    for k in range(60):
        mask = rng.random((14, 16)) > (0.3 if k % 2 else 0.5)
        if not mask.any():
            continue
        (label, ring), = label_polygons(mask.astype(np.int32) * 5)
        poly = check_ring(ring)
        pieces, _ = ndimage.label(mask)
        largest = pieces == np.argmax(np.bincount(pieces.ravel())[1:]) + 1
        assert label == 5 and poly.area == ndimage.binary_fill_holes(largest).sum()


def test_offset_and_simplify():
    lab = scene()
    base = dict(label_polygons(lab))
    shifted = dict(label_polygons(lab, offset=(1000.25, -7.5)))
    for label, ring in base.items():
        assert np.array_equal(shifted[label], ring + np.array([1000.25, -7.5]))
    simple = dict(label_polygons(lab, simplify=1.0))
    assert len(simple[3]) < len(base[3])
    for label, ring in simple.items():
        poly = check_ring(ring)
        assert abs(poly.area - Polygon(base[label]).area) <= 0.25 * Polygon(base[label]).length


def test_empty_and_bad_label_images():
    assert label_polygons(np.zeros((5, 5), np.uint8)) == []
    assert measure_nuclei(np.zeros((5, 5), np.uint8)) == []
    with pytest.raises(InputError, match="2-D"):
        label_polygons(np.zeros((2, 5, 5), np.uint8))
    with pytest.raises(InputError, match="integer"):
        label_polygons(np.zeros((5, 5), np.float32))
    with pytest.raises(InputError, match="negative"):
        label_polygons(-np.ones((5, 5), np.int32))


def test_huge_label_ids():
    lab = np.zeros((6, 6), np.uint32)
    lab[1:3, 1:3] = 4_000_000_000
    lab[4, 4] = 7
    assert [i for i, _ in label_polygons(lab)] == [7, 4_000_000_000]
    rows = measure_nuclei(lab)
    assert [(r["id"], r["area_px"]) for r in rows] == [(7, 1), (4_000_000_000, 4)]


def test_geojson_for_qupath(tmp_path):
    lab = scene()
    path = write_geojson(tmp_path / "a.geojson", lab, offset=(100, 200),
                         scores={3: 0.9, 70: float("nan")}, pixel_size_um=0.5)
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection"
    features = data["features"]
    labels = np.unique(lab[lab > 0]).tolist()
    assert len(features) == len(labels)
    rings = dict(label_polygons(lab, offset=(100, 200)))
    for feat, label in zip(features, labels, strict=True):
        geo = feat["geometry"]
        assert feat["type"] == "Feature" and geo["type"] in ("Polygon", "MultiPolygon")
        g = shape(geo)
        assert g.is_valid and g.area == (lab == label).sum()  # exact, pieces and holes too
        if geo["type"] == "Polygon" and len(geo["coordinates"]) == 1:  # one piece, no hole
            (ring,) = geo["coordinates"]
            assert ring[0] == ring[-1] and np.array_equal(ring, rings[label])
        props = feat["properties"]
        assert props["objectType"] == "detection"
        assert props["classification"]["name"] == "Nucleus"
        assert len(props["classification"]["color"]) == 3
        m = props["measurements"]
        assert m["label"] == label and m["area_px"] == (lab == label).sum()
        assert m["area_um2"] == pytest.approx(m["area_px"] * 0.25)
        assert feat["id"] == feature_id(label) and uuid.UUID(feat["id"]).version == 5
    by_label = {f["properties"]["measurements"]["label"]: f for f in features}
    assert by_label[3]["properties"]["measurements"]["score"] == 0.9
    assert "score" not in by_label[70]["properties"]["measurements"]  # NaN is not JSON
    assert len({f["id"] for f in features}) == len(features)
    assert feature_id(3, "img-a") != feature_id(3, "img-b")

    empty = json.loads(write_geojson(tmp_path / "e.geojson", np.zeros((4, 4), int)).read_text())
    assert empty == {"type": "FeatureCollection", "features": []}


def test_imagej_roi_zip(tmp_path):
    lab = scene()
    path = write_imagej_rois(tmp_path / "rois.zip", lab)
    rois = roifile.roiread(path)
    rings = label_polygons(lab)
    assert len(rois) == len(rings)
    for roi, (label, ring) in zip(rois, rings, strict=True):
        assert roi.name == f"nucleus-{label:05d}"  # 65535 needs five digits
        assert roi.roitype == roifile.ROI_TYPE.POLYGON
        assert np.array_equal(roi.coordinates(), ring[:-1])
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist()[0] == "nucleus-00003.roi"

    shifted = roifile.roiread(write_imagej_rois(tmp_path / "s.zip", lab, offset=(0.5, 70_000)))
    for roi, (_, ring) in zip(shifted, label_polygons(lab, offset=(0.5, 70_000)), strict=True):
        np.testing.assert_allclose(roi.coordinates(), ring[:-1], atol=1e-2)

    empty = write_imagej_rois(tmp_path / "e.zip", np.zeros((4, 4), np.uint16))
    assert zipfile.ZipFile(empty).namelist() == []


def test_measurements_and_csv(tmp_path):
    lab = scene()
    gray = np.arange(lab.size, dtype=np.float64).reshape(lab.shape)
    rgb = np.stack([gray, gray + 3, gray + 6, np.zeros_like(gray)], axis=2)  # RGBA
    rows = measure_nuclei(lab, image=rgb, scores={9: 0.5}, pixel_size_um=0.25)
    labels = np.unique(lab[lab > 0]).tolist()
    assert [r["id"] for r in rows] == labels
    for r in rows:
        mask = lab == r["id"]
        assert tuple(r) == CSV_COLUMNS
        assert r["area_px"] == mask.sum()
        assert r["area_um2"] == pytest.approx(r["area_px"] * 0.0625)
        assert r["perimeter_um"] == pytest.approx(r["perimeter_px"] * 0.25)
        assert r["mean_intensity"] == pytest.approx(gray[mask].mean() + 3)
        rr, cc = np.nonzero(mask)
        assert (r["centroid_x"], r["centroid_y"]) == pytest.approx((cc.mean(), rr.mean()))
        assert 0 <= r["eccentricity"] <= 1  # 1 for a 1-pixel-wide line
    bar = next(r for r in rows if r["id"] == 9)
    assert bar["score"] == 0.5 and bar["eccentricity"] > 0.9
    assert next(r for r in rows if r["id"] == 3)["score"] is None

    path = write_csv(tmp_path / "n.csv", rows)
    back = list(csv.DictReader(path.read_text().splitlines()))
    assert [int(b["area_px"]) for b in back] == [int((lab == i).sum()) for i in labels]
    assert back[0]["score"] == "" and float(back[1]["area_um2"]) == rows[1]["area_um2"]

    plain = measure_nuclei(lab, offset=(10, 20))
    assert plain[0]["area_um2"] is None and plain[0]["mean_intensity"] is None
    assert plain[0]["centroid_x"] == pytest.approx(rows[0]["centroid_x"] + 10)
    text = write_csv(tmp_path / "p.csv", plain).read_text().splitlines()
    assert text[0] == ",".join(CSV_COLUMNS) and text[1].split(",")[4] == ""
    assert write_csv(tmp_path / "e.csv", []).read_text().splitlines() == [",".join(CSV_COLUMNS)]

    with pytest.raises(InputError, match="shape"):
        measure_nuclei(lab, image=gray[:-1])
    with pytest.raises(ConfigError):
        measure_nuclei(lab, pixel_size_um=0)


@pytest.mark.parametrize("size", [0.25, 0.5034, 2.0])
def test_label_tif_pixel_size_round_trip(tmp_path, size):
    import tifffile

    lab = scene().astype(np.uint32)
    lab[0, 0] = 70_000  # forces uint32
    path = write_labels_tif(tmp_path / "l.tif", lab, pixel_size_um=size)
    assert read_pixel_size_um(path) == pytest.approx(size, rel=1e-6)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.dtype == np.uint32 and int(page.tags["ResolutionUnit"].value) == 3
        num, den = page.tags["XResolution"].value
        assert num / den == pytest.approx(1e4 / size, rel=1e-6)
        assert np.array_equal(page.asarray(), lab)


def test_pixel_size_absent_or_from_imagej(tmp_path):
    import tifffile

    plain = write_labels_tif(tmp_path / "p.tif", scene())
    assert read_pixel_size_um(plain) is None
    ij = tmp_path / "ij.tif"
    tifffile.imwrite(ij, scene(), imagej=True, resolution=(1 / 0.4, 1 / 0.4),
                     metadata={"unit": "micron"})
    assert read_pixel_size_um(ij) == pytest.approx(0.4, rel=1e-6)
    with pytest.raises(ConfigError):
        write_labels_tif(tmp_path / "bad.tif", scene(), pixel_size_um=-1.0)
    assert not (tmp_path / "bad.tif").exists()


def test_writers_never_overwrite_silently(tmp_path):
    lab = scene()
    writers = {
        "a.geojson": lambda p, ow: write_geojson(p, lab, overwrite=ow),
        "a.zip": lambda p, ow: write_imagej_rois(p, lab, overwrite=ow),
        "a.csv": lambda p, ow: write_csv(p, measure_nuclei(lab), overwrite=ow),
        "a.tif": lambda p, ow: write_labels_tif(p, lab, ow, pixel_size_um=0.5),
    }
    for name, write in writers.items():
        path = tmp_path / name
        path.write_bytes(b"keep")
        with pytest.raises(InputError, match="already exists"):
            write(path, False)
        assert path.read_bytes() == b"keep"
        write(path, True)
        assert path.read_bytes() != b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(writers)  # no temp files left


def test_every_label_exports_with_its_exact_area() -> None:
    """Corner-touching pieces become a MultiPolygon, holes become interior rings: the polygon
    area equals the pixel count for every label (checked with shapely)."""
    from sac.outputs.geojson import shape_geometry
    from sac.outputs.shapes import label_shapes

    lab = np.zeros((12, 14), np.int32)
    lab[1, 1] = lab[2, 2] = lab[3, 1] = 1  # three pieces touching at corners
    lab[5:10, 5:10] = 2
    lab[7, 7] = 0  # a hole
    lab[6, 6] = 0  # a hole touching the other at a corner
    lab[8, 8] = 3  # an island of another label inside label 2
    lab[0:3, 9:13] = 4
    lab[1, 10] = lab[1, 11] = 0  # a two-pixel hole
    lab[10:12, 0:2] = 5
    lab[11, 2] = 5
    counts = dict(zip(*np.unique(lab[lab > 0], return_counts=True), strict=True))
    for label, geo in label_shapes(lab):
        g = shape(shape_geometry(geo))
        assert g.is_valid, label
        assert g.area == counts[label], (label, g.area, counts[label])
    assert shape_geometry(dict(label_shapes(lab))[1])["type"] == "MultiPolygon"
    assert shape_geometry(dict(label_shapes(lab))[2])["type"] == "Polygon"


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1))
def test_random_labels_export_with_exact_areas(seed: int) -> None:
    from sac.outputs.geojson import shape_geometry
    from sac.outputs.shapes import label_shapes

    rng = np.random.default_rng(seed)
    lab = (rng.random((9, 9)) < 0.5) * rng.integers(1, 4, (9, 9))
    counts = dict(zip(*np.unique(lab[lab > 0], return_counts=True), strict=True))
    for label, geo in label_shapes(lab):
        g = shape(shape_geometry(geo))
        assert g.is_valid and g.area == counts[label]
