"""Tests for sac.data: image normalisation, MoNuSeg/DSB/folder readers, bad input and splits.

Synthetic fixtures are written into tmp_path; the real-data tests read ../shared/data and skip
when it is absent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import skimage.io
import tifffile
from skimage.draw import polygon as draw_polygon

from sac.core.errors import InputError
from sac.core.images import to_rgb_uint8
from sac.data import (
    DSB2018Dataset,
    FolderDataset,
    MoNuSegDataset,
    dsb_image_type,
    monuseg_organ,
    read_aperio_xml,
    read_image,
    read_labels,
    read_rgb,
    read_split,
    split_dsb,
    split_monuseg,
    write_split,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MONUSEG = DATA / "monuseg" / "train"
DSB = DATA / "dsb2018" / "stage1_train"


def save_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    skimage.io.imsave(path, arr, check_contrast=False)
    return path


def save_tif(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, arr)
    return path


def rgb(h: int = 40, w: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def aperio_xml(regions: list[list[tuple[float, float]]]) -> str:
    """Minimal Aperio ImageScope XML with one polygon per entry of ``regions``."""
    parts = [
        '<?xml version="1.0"?>\n<Annotations MicronsPerPixel="0.25">\n<Annotation Id="1">',
        "<Regions>",
    ]
    for k, pts in enumerate(regions, 1):
        parts.append(f'<Region Id="{k}" Type="0"><Attributes/><Vertices>')
        parts += [f'<Vertex X="{x}" Y="{y}"/>' for x, y in pts]
        parts.append("</Vertices></Region>")
    parts.append("</Regions></Annotation></Annotations>")
    return "\n".join(parts)


def write_xml(path: Path, regions: list[list[tuple[float, float]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(aperio_xml(regions))
    return path


TRIANGLE = [(5.2, 4.7), (25.6, 6.1), (12.3, 30.4)]
SQUARE = [(30.2, 10.2), (45.8, 10.2), (45.8, 25.8), (30.2, 25.8)]
BLOB = [(10.0, 32.0), (20.0, 31.0), (22.0, 38.0), (9.0, 39.0)]


# --- images: reading and normalisation ----------------------------------------------------
def test_uint8_rgb_kept_and_gray_repeated() -> None:
    img = rgb()
    assert np.array_equal(to_rgb_uint8(img), img)
    gray = img[..., 0]
    out = to_rgb_uint8(gray)
    assert out.shape == (*gray.shape, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[..., c], gray) for c in range(3))
    assert np.array_equal(to_rgb_uint8(gray[..., None]), out)


def test_rgba_drops_alpha_and_gray_alpha_keeps_gray() -> None:
    img = rgb()
    rgba = np.dstack([img, np.full(img.shape[:2], 7, np.uint8)])
    assert np.array_equal(to_rgb_uint8(rgba), img)
    la = np.dstack([img[..., 1], np.zeros(img.shape[:2], np.uint8)])
    assert np.array_equal(to_rgb_uint8(la), np.repeat(img[..., 1:2], 3, axis=2))


def test_uint16_and_float_scaling() -> None:
    u16 = np.array([[100, 300], [900, 700]], dtype=np.uint16)
    out = to_rgb_uint8(u16)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert out[..., 0].tolist() == [[0, 64], [255, 191]]  # min-max per image: 100 -> 0, 900 -> 255
    f = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)  # in [0, 1]: times 255
    assert to_rgb_uint8(f)[..., 0].tolist() == [[0, 128], [255, 64]]
    f2 = np.array([[2.0, 4.0]], dtype=np.float64)  # outside [0, 1]: min-max
    assert to_rgb_uint8(f2)[..., 0].tolist() == [[0, 255]]
    assert not to_rgb_uint8(np.full((3, 3), 1000, np.uint16)).any()  # constant -> zeros
    assert to_rgb_uint8(np.eye(2, dtype=bool))[..., 0].tolist() == [[255, 0], [0, 255]]
    with pytest.raises(InputError, match="NaN"):
        to_rgb_uint8(np.array([[np.nan, 0.0]]))
    with pytest.raises(InputError, match="shape"):
        to_rgb_uint8(np.zeros((2, 3, 4, 5), np.uint8))


def test_read_formats_16bit_gray_and_rgba(tmp_path: Path) -> None:
    img = rgb()
    assert np.array_equal(read_rgb(save_png(tmp_path / "a.png", img)), img)
    assert np.array_equal(read_rgb(save_tif(tmp_path / "a.tif", img)), img)
    jpg = read_rgb(save_png(tmp_path / "a.jpg", img))
    assert jpg.shape == img.shape and jpg.dtype == np.uint8
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    assert np.array_equal(read_rgb(save_png(tmp_path / "rgba.png", rgba)), img)
    g16 = np.linspace(1000, 5000, 40 * 50).reshape(40, 50).astype(np.uint16)
    for p in (save_png(tmp_path / "g16.png", g16), save_tif(tmp_path / "g16.tiff", g16)):
        assert read_image(p).dtype == np.uint16
        out = read_rgb(p)
        assert out.shape == (40, 50, 3) and out.dtype == np.uint8
        assert out.min() == 0 and out.max() == 255
        assert np.array_equal(out, to_rgb_uint8(g16))
    # (1, H, W) TIFF pages are squeezed
    assert read_image(save_tif(tmp_path / "stack1.tif", g16[None])).shape == (40, 50)


def test_read_image_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.png: file not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.png: file is empty \(0 bytes\)"):
        read_image(tmp_path / "empty.png")
    rng = np.random.default_rng(1)
    for name in ("corrupt.png", "corrupt.tif", "corrupt.jpg"):
        (tmp_path / name).write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
        with pytest.raises(InputError, match=rf"{name.replace('.', '[.]')}: cannot decode"):
            read_image(tmp_path / name)
    tifffile.imwrite(
        tmp_path / "four_d.tif", np.zeros((2, 3, 8, 8), np.uint8), photometric="minisblack"
    )
    with pytest.raises(InputError, match=r"four_d\.tif: unsupported image shape \(2, 3, 8, 8\)"):
        read_image(tmp_path / "four_d.tif")
    (tmp_path / "x.bmp").write_bytes(b"BM")
    with pytest.raises(InputError, match="unsupported file type"):
        read_image(tmp_path / "x.bmp")
    with pytest.raises(InputError, match="not a regular file"):
        read_image(tmp_path)


def test_read_labels_rejects_colour_and_negative(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="must be 2-D"):
        read_labels(save_png(tmp_path / "rgb_labels.png", rgb()))
    with pytest.raises(InputError, match="negative"):
        read_labels(save_tif(tmp_path / "neg.tif", np.array([[0, -1]], np.int16)))
    lab = read_labels(save_png(tmp_path / "ok.png", np.array([[0, 7], [300, 0]], np.uint16)))
    assert lab.dtype == np.uint32 and lab.tolist() == [[0, 7], [300, 0]]


# --- MoNuSeg XML ----------------------------------------------------------------------------
def expected_area(pts: list[tuple[float, float]], shape: tuple[int, int]) -> int:
    xy = np.asarray(pts)
    rr, _ = draw_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=shape)  # pixel-centre convention
    return len(rr)


def test_xml_polygons_rasterised(tmp_path: Path) -> None:
    xml = write_xml(tmp_path / "a.xml", [TRIANGLE, SQUARE, BLOB])
    warnings: list[str] = []
    labels = read_aperio_xml(xml, (40, 50), warnings=warnings)
    assert labels.dtype == np.uint32 and labels.shape == (40, 50)
    assert sorted(np.unique(labels)) == [0, 1, 2, 3]
    assert warnings == []
    for k, pts in enumerate([TRIANGLE, SQUARE, BLOB], 1):
        area = int((labels == k).sum())
        assert area == expected_area(pts, (40, 50))
    # pixel centres (c + 0.5, r + 0.5) inside the square: columns 30..45, rows 10..25
    assert int((labels == 2).sum()) == 16 * 16
    assert labels[10, 30] == 2 and labels[25, 45] == 2 and labels[9, 30] == 0
    # 1-based vertex convention (MATLAB poly2mask style): columns 30..44, rows 10..24
    one_based = read_aperio_xml(xml, (40, 50), pixel_offset=1.0)
    assert int((one_based == 2).sum()) == 15 * 15 and one_based[25, 45] == 0
    assert labels[18, 37] == 2 and labels[0, 0] == 0


def test_xml_overlap_later_wins(tmp_path: Path) -> None:
    big = [(2.0, 2.0), (30.0, 2.0), (30.0, 30.0), (2.0, 30.0)]
    small = [(10.0, 10.0), (20.0, 10.0), (20.0, 20.0), (10.0, 20.0)]
    labels = read_aperio_xml(write_xml(tmp_path / "o.xml", [big, small]), (40, 40))
    assert labels[15, 15] == 2 and labels[5, 5] == 1
    # a region fully hidden by a later one disappears; ids stay consecutive
    warnings: list[str] = []
    labels = read_aperio_xml(write_xml(tmp_path / "h.xml", [small, big]), (40, 40), warnings)
    assert sorted(np.unique(labels)) == [0, 1]
    assert any("cover no pixel" in w for w in warnings)


def test_xml_few_vertices_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    xml = write_xml(tmp_path / "few.xml", [TRIANGLE, [(1.0, 1.0), (5.0, 5.0)], SQUARE])
    warnings: list[str] = []
    with caplog.at_level(logging.WARNING, logger="sac.data"):
        labels = read_aperio_xml(xml, (40, 50), warnings=warnings)
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert len(warnings) == 1 and "fewer than 3 vertices" in warnings[0]
    assert "few.xml" in warnings[0] and "2 (2 vertices)" in warnings[0]
    assert "fewer than 3 vertices" in caplog.text


def test_xml_outside_coordinates_clipped(tmp_path: Path) -> None:
    out = [(-10.0, 5.0), (20.0, 5.0), (20.0, 60.0), (-10.0, 60.0)]  # beyond left and bottom
    warnings: list[str] = []
    labels = read_aperio_xml(write_xml(tmp_path / "c.xml", [out]), (40, 50), warnings=warnings)
    assert len(warnings) == 1 and "clipped" in warnings[0]
    # clipped to columns 0..19 and rows 5..39
    assert int((labels == 1).sum()) == 20 * 35
    assert labels[39, 0] == 1 and labels[4, 0] == 0 and labels[10, 20] == 0


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (aperio_xml([]), "no <Region> polygons"),
        ("", "empty"),
        ("<Annotations><Annotation><Regions><Region>", "malformed XML"),
        (aperio_xml([[(1, 1), ("x", 2), (3, 3)]]), "non-numeric"),
        (aperio_xml([[(1, 1), (2, 2)]]), "no usable nucleus polygon"),
    ],
)
def test_xml_bad_files_raise(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(content)
    with pytest.raises(InputError, match=match) as info:
        read_aperio_xml(path, (40, 50))
    assert "bad.xml" in str(info.value)


def make_monuseg(root: Path) -> None:
    for stem in ("TCGA-AA-0001", "TCGA-BB-0002", "TCGA-CC-0003"):
        save_tif(root / "images" / f"{stem}.tif", rgb(40, 50))
    write_xml(root / "annotations" / "TCGA-AA-0001.xml", [TRIANGLE, SQUARE])
    write_xml(root / "annotations" / "TCGA-BB-0002.xml", [TRIANGLE])
    lab = np.zeros((40, 50), np.uint16)
    lab[5:10, 5:10], lab[20:30, 20:30], lab[30:35, 40:45] = 1, 2, 3
    save_png(root / "labels" / "TCGA-BB-0002.png", lab)


def test_monuseg_dataset_annotation_choice(tmp_path: Path) -> None:
    make_monuseg(tmp_path)
    auto = MoNuSegDataset(tmp_path)
    assert auto.names == ["TCGA-AA-0001", "TCGA-BB-0002"]
    assert [p.name for p in auto.problems] == ["TCGA-CC-0003"]
    assert "no annotation found" in auto.problems[0].message
    s = auto["TCGA-BB-0002"]  # labels preferred over XML
    assert s.source == "monuseg:labels" and s.n_instances == 3
    assert s.image.shape == (40, 50, 3) and s.image.dtype == np.uint8
    assert s.labels.dtype == np.uint32
    assert auto[0].source == "monuseg:xml" and auto[0].n_instances == 2
    assert np.array_equal(auto.read_image(0), auto[0].image)  # image only, no annotation
    xml = MoNuSegDataset(tmp_path, annotation="xml")
    assert len(xml) == 2 and xml[1].source == "monuseg:xml" and xml[1].n_instances == 1
    labels = MoNuSegDataset(tmp_path, annotation="labels")
    assert labels.names == ["TCGA-BB-0002"] and len(labels.problems) == 2
    with pytest.raises(InputError, match="annotation="):
        MoNuSegDataset(tmp_path, annotation="masks")  # type: ignore[arg-type]


def test_monuseg_label_size_mismatch(tmp_path: Path) -> None:
    make_monuseg(tmp_path)
    save_png(tmp_path / "labels" / "TCGA-BB-0002.png", np.zeros((30, 50), np.uint16))
    ds = MoNuSegDataset(tmp_path)
    with pytest.raises(InputError) as info:
        ds["TCGA-BB-0002"]
    msg = str(info.value)
    assert "TCGA-BB-0002.tif" in msg and "TCGA-BB-0002.png" in msg
    assert "(40, 50, 3)" in msg and "(30, 50)" in msg


# --- DSB 2018 -----------------------------------------------------------------------------
def make_dsb_sample(root: Path, sid: str, image: np.ndarray, boxes: list[tuple[int, ...]]) -> Path:
    d = root / sid
    save_png(d / "images" / f"{sid}.png", image)
    for k, (r0, r1, c0, c1) in enumerate(boxes):
        m = np.zeros(image.shape[:2], np.uint8)
        m[r0:r1, c0:c1] = 255
        save_png(d / "masks" / f"m{k:02d}.png", m)
    return d


def test_dsb_reader(tmp_path: Path) -> None:
    rgba = np.dstack([rgb(32, 48), np.full((32, 48), 255, np.uint8)])
    make_dsb_sample(tmp_path, "a1", rgba, [(1, 5, 1, 5), (10, 20, 10, 20), (25, 30, 40, 46)])
    make_dsb_sample(tmp_path, "b2", rgb(32, 48)[..., 0], [(0, 32, 0, 10), (5, 9, 30, 34)])
    (tmp_path / "c3" / "images").mkdir(parents=True)  # image-less folder
    save_png(tmp_path / "d4" / "images" / "d4.png", rgb(8, 8))  # no masks
    ds = DSB2018Dataset(tmp_path)
    assert len(ds) == 2 and ds.names == ["a1", "b2"]
    assert sorted(p.name for p in ds.problems) == ["c3", "d4"]
    assert "no mask files" in next(p for p in ds.problems if p.name == "d4").message
    for s in ds:
        n_masks = len(list((tmp_path / s.name / "masks").glob("*.png")))
        assert s.n_instances == n_masks and s.labels.max() == n_masks
        assert s.image.shape == (32, 48, 3) and s.image.dtype == np.uint8
        assert s.source == "dsb2018" and s.warnings == []
    assert np.array_equal(ds[0].image, rgba[..., :3])
    assert int((ds["a1"].labels == 2).sum()) == 100


def test_dsb_overlap_empty_and_size_mismatch(tmp_path: Path) -> None:
    d = make_dsb_sample(tmp_path, "x", rgb(20, 20), [(0, 10, 0, 10), (5, 15, 5, 15)])
    save_png(d / "masks" / "m99.png", np.zeros((20, 20), np.uint8))  # empty mask
    s = DSB2018Dataset(tmp_path)[0]
    assert s.n_instances == 2 and s.labels[7, 7] == 2 and s.labels[2, 2] == 1
    assert any("overlap" in w and "later masks win" in w for w in s.warnings)
    assert any("empty mask" in w and "m99.png" in w for w in s.warnings)
    save_png(d / "masks" / "m50.png", np.zeros((20, 21), np.uint8))
    with pytest.raises(InputError) as info:
        DSB2018Dataset(tmp_path)[0]
    assert "x.png" in str(info.value) and "m50.png" in str(info.value)
    assert "(20, 21)" in str(info.value)


# --- generic folders ----------------------------------------------------------------------
def label_image(h: int, w: int, n: int) -> np.ndarray:
    lab = np.zeros((h, w), np.uint16)
    for k in range(1, n + 1):
        lab[2 * k : 2 * k + 2, 3:9] = k
    return lab


def test_images_labels_folder(tmp_path: Path) -> None:
    save_tif(tmp_path / "images" / "one.tif", rgb(30, 20))
    save_png(tmp_path / "images" / "two.png", rgb(30, 20, seed=2))
    save_png(tmp_path / "images" / "lonely.png", rgb(30, 20))
    save_png(tmp_path / "labels" / "one.png", label_image(30, 20, 3))
    save_tif(tmp_path / "labels" / "two.tif", label_image(30, 20, 5))
    save_png(tmp_path / "labels" / "orphan.png", label_image(30, 20, 1))
    ds = FolderDataset(tmp_path)
    assert ds.layout == "images_labels" and ds.names == ["one", "two"]
    assert ds["one"].n_instances == 3 and ds["two"].n_instances == 5 and ds[-1].name == "two"
    assert ds[0].source == "folder" and ds[0].labels.dtype == np.uint32
    msgs = {p.name: p.message for p in ds.problems}
    assert set(msgs) == {"lonely", "orphan"}
    assert msgs["lonely"].startswith("image without labels")
    assert msgs["orphan"].startswith("labels without an image")


def test_masks_folder_and_size_mismatch(tmp_path: Path) -> None:
    save_png(tmp_path / "images" / "a.png", rgb(30, 20))
    save_png(tmp_path / "masks" / "a.png", label_image(30, 21, 2))
    ds = FolderDataset(tmp_path)
    assert ds.names == ["a"]
    with pytest.raises(InputError) as info:
        ds[0]
    msg = str(info.value)
    assert "images/a.png" in msg and "masks/a.png" in msg
    assert "(30, 20, 3)" in msg and "(30, 21)" in msg


def test_cellpose_folder(tmp_path: Path) -> None:
    save_tif(tmp_path / "cells1.tif", rgb(24, 24)[..., 0])
    save_tif(tmp_path / "cells1_masks.tif", label_image(24, 24, 4))
    save_png(tmp_path / "cells2.png", rgb(24, 24))
    save_png(tmp_path / "cells2_masks.png", label_image(24, 24, 2))
    save_png(tmp_path / "nomask.png", rgb(24, 24))
    ds = FolderDataset(tmp_path)
    assert ds.layout == "cellpose" and ds.names == ["cells1", "cells2"]
    assert [p.name for p in ds.problems] == ["nomask"]
    assert "image without labels" in ds.problems[0].message
    s = ds["cells1"]
    assert s.n_instances == 4 and s.source == "folder:cellpose"
    assert s.image.shape == (24, 24, 3) and s.image.dtype == np.uint8


def test_listing_is_lazy(tmp_path: Path) -> None:
    save_png(tmp_path / "images" / "good.png", rgb(10, 10))
    save_png(tmp_path / "labels" / "good.png", label_image(10, 10, 1))
    (tmp_path / "images" / "bad.png").write_bytes(b"\x89PNG garbage")
    save_png(tmp_path / "labels" / "bad.png", label_image(10, 10, 1))
    ds = FolderDataset(tmp_path)  # listing does not decode anything
    assert ds.names == ["bad", "good"] and ds["good"].n_instances == 1
    with pytest.raises(InputError, match=r"bad\.png: cannot decode"):
        ds["bad"]


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        FolderDataset(tmp_path / "nope")
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError, match="no 'labels' or 'masks' folder"):
        FolderDataset(tmp_path)


# --- splits -------------------------------------------------------------------------------
# Synthetic names with the real tissue-source-site codes and per-code counts of MoNuSeg train.
SITE_COUNTS = (
    "18:1 21:2 38:1 49:1 50:1 A7:2 AR:2 AY:1 B0:3 CH:1 DK:1 E2:2 G2:1 G9:5 HE:3 KB:1 NH:1 RD:1"
)
MONUSEG_LIKE = [
    f"TCGA-{code}-{i:04d}-01Z-00-DX1"
    for code, n in (item.split(":") for item in SITE_COUNTS.split(" "))
    for i in range(int(n))
]


def test_monuseg_organs() -> None:
    assert monuseg_organ("TCGA-18-5592-01Z-00-DX1") == "lung"
    assert monuseg_organ("TCGA-RD-A8N9-01A-01-TS1.tif") == "stomach"
    assert monuseg_organ("TCGA-ZZ-0000") == "unknown" and monuseg_organ("image1") == "unknown"


def test_split_monuseg() -> None:
    assert len(MONUSEG_LIKE) == 30
    train, val = split_monuseg(MONUSEG_LIKE)
    assert (train, val) == split_monuseg(list(reversed(MONUSEG_LIKE)))  # deterministic
    assert len(val) == 6 and not set(train) & set(val)
    assert sorted(train + val) == sorted(MONUSEG_LIKE)
    organs = {monuseg_organ(n) for n in val}
    assert len(organs) >= 4
    assert len(organs) == 6  # one per organ that has >= 2 images
    assert all(monuseg_organ(n) in {monuseg_organ(t) for t in train} for n in val)
    other = [split_monuseg(MONUSEG_LIKE, seed=s)[1] for s in range(1, 6)]
    assert any(v != val for v in other)
    assert len(split_monuseg(MONUSEG_LIKE, n_val=10)[1]) == 10


def test_split_monuseg_organs() -> None:
    from sac.data.splits import split_monuseg_organs

    train, val = split_monuseg_organs(MONUSEG_LIKE, organs=("lung", "colon"))
    assert sorted(train + val) == sorted(MONUSEG_LIKE) and val
    assert {monuseg_organ(n) for n in val} == {"lung", "colon"}
    assert not {"lung", "colon"} & {monuseg_organ(n) for n in train}
    with pytest.raises(ValueError, match="unknown organ"):
        split_monuseg_organs(MONUSEG_LIKE, organs=("heart",))


def test_dsb_image_type_and_split() -> None:
    dark = np.full((20, 20), 10, np.uint8)
    dark[5:8, 5:8] = 200
    light_gray = np.full((20, 20), 220, np.uint8)
    he = np.dstack([np.full((20, 20), 230), np.full((20, 20), 180), np.full((20, 20), 220)])
    assert dsb_image_type(dark) == "fluorescence"
    assert dsb_image_type(light_gray) == "brightfield"
    assert dsb_image_type(he.astype(np.uint8)) == "histology"
    types = {f"f{i:03d}": "fluorescence" for i in range(100)}
    types |= {f"b{i:02d}": "brightfield" for i in range(10)}
    types |= {f"h{i:02d}": "histology" for i in range(20)}
    train, val = split_dsb(types)
    assert (train, val) == split_dsb(dict(reversed(types.items())))
    assert not set(train) & set(val) and len(train) + len(val) == len(types)
    per_type = {
        t: sum(types[n] == t for n in val) for t in ("fluorescence", "brightfield", "histology")
    }
    assert per_type == {"fluorescence": 15, "brightfield": 2, "histology": 3}


def test_write_read_split(tmp_path: Path) -> None:
    path = tmp_path / "splits" / "monuseg.json"
    write_split(path, ["b", "a"], ["c"], {"seed": 0, "rule": "organs"})
    doc = json.loads(path.read_text())
    assert doc["train"] == ["a", "b"] and doc["val"] == ["c"]
    split = read_split(path)
    assert split.train == ["a", "b"] and split.val == ["c"] and split.meta["seed"] == 0
    with pytest.raises(InputError, match="both train and val"):
        write_split(path, ["a"], ["a"])
    path.write_text("{not json")
    with pytest.raises(InputError, match=r"monuseg\.json: not a valid JSON"):
        read_split(path)
    path.write_text(json.dumps({"format": "sac-split/1", "train": ["a"], "val": ["a"]}))
    with pytest.raises(InputError, match="both train and val"):
        read_split(path)


# --- real data (skipped without ../shared/data) -------------------------------------------
XML_STEMS = sorted(p.stem for p in (MONUSEG / "annotations").glob("*.xml"))


@pytest.mark.data
@pytest.mark.skipif(not XML_STEMS, reason=f"real MoNuSeg data not found at {MONUSEG}")
@pytest.mark.parametrize("stem", XML_STEMS)
def test_real_monuseg_xml_matches_label_png(stem: str) -> None:
    xml_ds = MoNuSegDataset(MONUSEG, annotation="xml")
    sample = xml_ds[stem]
    assert sample.image.shape == (1000, 1000, 3) and sample.image.dtype == np.uint8
    ref = read_labels(MONUSEG / "labels" / f"{stem}.png")
    fg, ref_fg = sample.labels > 0, ref > 0
    dice = 2 * np.count_nonzero(fg & ref_fg) / (np.count_nonzero(fg) + np.count_nonzero(ref_fg))
    assert dice >= 0.95, f"{stem}: foreground Dice {dice:.3f}"
    n_ref = np.count_nonzero(np.unique(ref))
    assert abs(sample.n_instances - n_ref) <= 0.02 * n_ref


@pytest.mark.data
@pytest.mark.skipif(not DSB.is_dir(), reason=f"real DSB 2018 data not found at {DSB}")
def test_real_dsb_instance_counts() -> None:
    ds = DSB2018Dataset(DSB)
    assert len(ds) == 670 and not ds.problems
    for i in (0, len(ds) // 2, len(ds) - 1):
        s = ds[i]
        n_masks = len(list((DSB / s.name / "masks").glob("*.png")))
        assert s.n_instances == n_masks and s.labels.max() == n_masks
        assert s.image.ndim == 3 and s.image.shape[2] == 3 and s.image.dtype == np.uint8


def test_planar_separate_rgb_tiff(tmp_path) -> None:
    import tifffile

    from sac.data.images import read_image

    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "p.tif", np.moveaxis(rgb, -1, 0), photometric="rgb",
                     planarconfig="separate")
    assert np.array_equal(read_image(tmp_path / "p.tif"), rgb)


def test_group_split_holds_out_whole_groups() -> None:
    from sac.data.splits import bbbc039_well, bitdepth_tissue, group_split

    assert bbbc039_well("IXMtest_A02_s1_w1051DAA7C") == "A02"
    assert bitdepth_tissue("liver_40x_oil_3") == "liver"
    groups = {f"g{g}_{i}": f"g{g}" for g in range(5) for i in range(g + 2)}
    train, val = group_split(groups, 0.2, seed=0)
    assert sorted(train + val) == sorted(groups) and not set(train) & set(val)
    held = {groups[n] for n in val}
    assert all(groups[n] not in held for n in train)  # no group on both sides
    assert len(val) >= 0.2 * len(groups)
    assert group_split(groups, 0.2, seed=0) == (train, val)  # deterministic


@pytest.mark.parametrize("split, folder", [("bbbc039", "bbbc039"),
                                           ("bitdepth", "bitdepth_nucseg")])
def test_new_fluorescence_sets_read_with_their_builtin_splits(split: str, folder: str) -> None:
    from sac.data.folders import FolderDataset
    from sac.data.splits import load_builtin_split

    root = Path(__file__).resolve().parents[2] / "shared" / "data" / folder
    if not root.is_dir():
        pytest.skip(f"{root} is absent (a fresh clone has no shared data)")
    ds = FolderDataset(root)
    sp = load_builtin_split(split)
    assert not ds.problems and set(sp.train) | set(sp.val) == set(ds.names)
    s = ds[sp.val[0]]
    assert s.image.shape[:2] == s.labels.shape and s.labels.max() > 0
