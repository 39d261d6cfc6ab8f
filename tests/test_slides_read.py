"""Whole-slide reading: pyramidal TIFFs written here, backends, tissue mask, tile grid."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

import sac.slides.open as slide_open
from sac.core.errors import ConfigError, InputError
from sac.data.images import read_rgb
from sac.slides import (
    ArraySlide,
    check_region,
    open_slide,
    slide_tiles,
    slide_tissue_mask,
    tile_has_tissue,
    tissue_mask,
)
from sac.slides.tiff import TiffFileSlide

from synthetic import disk_labels

W, H, MPP, TILE = 1500, 1200, 0.25, 256
DISKS = [(300, 400, 120), (800, 1100, 150), (1000, 300, 90), (200, 1300, 60)]  # (cy, cx, r)
COLOURS = [(200, 80, 160), (120, 60, 170), (230, 150, 190), (90, 40, 120)]  # H&E-like


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    """White slide with textured, coloured disks (the texture makes equality checks strict)."""
    rng = np.random.default_rng(0)
    img = np.full((H, W, 3), 255, np.uint8)
    labels = disk_labels((H, W), DISKS)
    for i, colour in enumerate(COLOURS, start=1):
        m = labels == i
        noise = rng.integers(-20, 21, (int(m.sum()), 3))
        img[m] = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
    return img


def _levels(img: np.ndarray) -> list[np.ndarray]:
    return [img, img[::2, ::2], img[::4, ::4]]


def _write(path: Path, img: np.ndarray, subifds: bool) -> Path:
    """3-level tiled pyramid, in SubIFDs (OME/tifffile style) or successive pages (OpenSlide's
    generic TIFF), with the pixel size in the resolution tags."""
    levels = _levels(img)
    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate(levels):
            per_cm = 1e4 / (MPP * 2**i)
            extra = {"subifds": len(levels) - 1} if subifds and i == 0 else {}
            tw.write(level, tile=(TILE, TILE), photometric="rgb", compression="zlib",
                     resolution=(per_cm, per_cm), resolutionunit="CENTIMETER",
                     subfiletype=1 if i else 0, **extra)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, source: np.ndarray) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("slides")
    return {"subifd": _write(folder / "pyramid_subifd.tif", source, subifds=True),
            "pages": _write(folder / "pyramid_pages.tif", source, subifds=False)}


def _expected(level_img: np.ndarray, lx: int, ly: int, w: int, h: int) -> np.ndarray:
    """The window of an in-memory level, white outside it."""
    out = np.full((h, w, 3), 255, np.uint8)
    lh, lw = level_img.shape[:2]
    x0, y0, x1, y1 = max(lx, 0), max(ly, 0), min(lx + w, lw), min(ly + h, lh)
    if x1 > x0 and y1 > y0:
        out[y0 - ly:y1 - ly, x0 - lx:x1 - lx] = level_img[y0:y1, x0:x1]
    return out


REGIONS = [(0, 0, 100, 80), (200, 230, 120, 90), (250, 500, 300, 300),  # tile-crossing
           (1400, 1100, 200, 150), (-50, -20, 100, 60), (1600, 0, 10, 10)]  # partly/wholly out


@pytest.mark.parametrize("layout", ["subifd", "pages"])
def test_tifffile_reader(files: dict[str, Path], source: np.ndarray, layout: str) -> None:
    with open_slide(files[layout]) as slide:
        assert isinstance(slide, TiffFileSlide)
        assert slide.dimensions == (W, H) and slide.level_count == 3
        assert slide.level_dimensions == ((1500, 1200), (750, 600), (375, 300))
        assert slide.level_downsamples == (1.0, 2.0, 4.0)
        assert slide.mpp == pytest.approx(MPP)
        for x, y, w, h in REGIONS:
            got = slide.read_region(x, y, w, h)
            assert got.dtype == np.uint8 and got.shape == (h, w, 3)
            np.testing.assert_array_equal(got, _expected(source, x, y, w, h))
        # level 2: (x, y) in level-0 pixels, size in level pixels
        np.testing.assert_array_equal(slide.read_region(400, 600, 90, 70, level=2),
                                      _expected(_levels(source)[2], 100, 150, 90, 70))
        assert [slide.best_level_for_downsample(d) for d in (0.5, 1, 1.9, 2, 3.99, 16)] == \
            [0, 0, 0, 1, 2, 2]
        thumb = slide.thumbnail(300)
        assert thumb.shape == (240, 300, 3) and thumb.dtype == np.uint8
        small = source[::5, ::5].astype(float)
        assert np.abs(thumb.astype(float) - small).mean() < 12


def test_reads_only_the_tiles_it_needs(files: dict[str, Path], monkeypatch) -> None:
    decoded: list[tuple[int, int]] = []

    def counting(level: int, index: int) -> None:
        decoded.append((level, index))

    with TiffFileSlide(files["subifd"], cache_bytes=0, on_decode=counting) as slide:
        assert decoded == [(2, 0)]  # the probe at opening: one tile of the smallest level
        decoded.clear()
        tracemalloc.start()
        slide.read_region(230, 230, 64, 64)  # a tile corner: 4 of the level's 30 tiles
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert sorted(decoded) == [(0, 0), (0, 1), (0, 6), (0, 7)]
        assert peak < W * H * 3 / 4  # far below the decoded level (5.4 MB)
        decoded.clear()
        slide.read_region(0, 0, 10, 10, level=1)
        assert decoded == [(1, 0)]
    with TiffFileSlide(files["subifd"], on_decode=counting) as slide:  # shared tiles decode once
        decoded.clear()
        slide.read_region(230, 230, 64, 64)
        slide.read_region(240, 240, 64, 64)
        assert len(decoded) == 4


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_optional_backends(files: dict[str, Path], source: np.ndarray, backend: str) -> None:
    module = "openslide" if backend == "openslide" else "tiffslide"
    pytest.importorskip(module, reason=f"{module} is not installed (pip install "
                                       "'segment-any-cell[wsi]')")
    with open_slide(files["pages"], backend=backend) as slide:
        assert slide.backend == backend
        assert slide.level_dimensions == ((1500, 1200), (750, 600), (375, 300))
        assert slide.mpp == pytest.approx(MPP)
        for x, y, w, h in REGIONS:
            np.testing.assert_array_equal(slide.read_region(x, y, w, h),
                                          _expected(source, x, y, w, h))
        np.testing.assert_array_equal(slide.read_region(400, 600, 90, 70, level=2),
                                      _expected(_levels(source)[2], 100, 150, 90, 70))
        assert slide.thumbnail(150).shape == (120, 150, 3)


def test_vendor_suffix_prefers_openslide(files: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("openslide", reason="openslide-python / openslide-bin not installed")
    svs = tmp_path / "slide.svs"  # OpenSlide recognises the content, not the name
    shutil.copy(files["pages"], svs)
    with open_slide(svs) as slide:
        assert slide.backend == "openslide" and slide.level_count == 3


def test_sample_layouts_match_read_rgb(tmp_path: Path) -> None:
    """Gray 16-bit and float strips, tiled RGBA and planar RGB convert as sac.data.images does
    (which reads planar RGB as a (3, H, W) stack: compared with the interleaved array)."""
    rng = np.random.default_rng(1)
    arrays = {
        "gray16.tif": (rng.integers(300, 4000, (300, 400), dtype=np.uint16), {}),
        "rgba.tif": (rng.integers(0, 256, (300, 400, 4), dtype=np.uint8),
                     {"photometric": "rgb", "tile": (128, 128)}),
        "planar.tif": (rng.integers(0, 256, (3, 300, 400), dtype=np.uint8),
                       {"photometric": "rgb", "planarconfig": "separate", "tile": (64, 64)}),
        "float.tif": (rng.random((300, 400), dtype=np.float32), {"rowsperstrip": 16}),
    }
    for name, (arr, kwargs) in arrays.items():
        path = tmp_path / name
        tifffile.imwrite(path, arr, compression="zlib", **kwargs)
        want = arr.transpose(1, 2, 0) if name == "planar.tif" else read_rgb(path)
        with open_slide(path) as slide:
            assert slide.dimensions == (400, 300) and slide.level_count == 1
            assert slide.mpp is None
            np.testing.assert_array_equal(slide.read_region(0, 0, 400, 300), want, err_msg=name)
            np.testing.assert_array_equal(slide.read_region(70, 90, 150, 100),
                                          want[90:190, 70:220], err_msg=name)


def test_png_is_an_in_memory_slide(tmp_path: Path, source: np.ndarray) -> None:
    import imageio.v3 as iio

    path = tmp_path / "small.png"
    iio.imwrite(path, source[:200, :300])
    with open_slide(path) as slide:
        assert isinstance(slide, ArraySlide) and slide.dimensions == (300, 200)
        np.testing.assert_array_equal(slide.read_region(-5, 0, 20, 10),
                                      _expected(source[:200, :300], -5, 0, 20, 10))


def test_bad_files_name_the_file(tmp_path: Path, files: dict[str, Path]) -> None:
    empty = tmp_path / "empty.tif"
    empty.touch()
    text = tmp_path / "notes.svs"
    text.write_text("not a slide at all\n" * 20)
    fake = tmp_path / "fake.tif"
    fake.write_bytes(b"II*\x00" + b"\xff" * 60)
    cases = {empty: "empty", text: "cannot open", fake: "cannot open",
             tmp_path / "missing.ndpi": "not found", tmp_path: "not a regular file"}
    for path, reason in cases.items():
        with pytest.raises(InputError, match=reason) as info:
            open_slide(path)
        assert str(path) in str(info.value)
    truncated = tmp_path / "truncated.tif"
    data = files["subifd"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated") as info, open_slide(truncated) as slide:
        slide.read_region(0, 0, W, H)  # fails at opening or at reading
    assert str(truncated) in str(info.value)
    with pytest.raises(ConfigError, match="unknown slide backend"):
        open_slide(files["subifd"], backend="bioformats")


def test_missing_openslide_suggests_install(tmp_path: Path, monkeypatch) -> None:
    def no_vendor_packages(name: str, path: Path):
        if name in ("openslide", "tiffslide"):
            raise ModuleNotFoundError(name=name)
        return original(name, path)

    original = slide_open._open_with
    monkeypatch.setattr(slide_open, "_open_with", no_vendor_packages)
    slide = tmp_path / "case.ndpi"
    slide.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="openslide-bin") as info:
        open_slide(slide)
    assert str(slide) in str(info.value)
    with pytest.raises(ConfigError, match="not installed"):
        open_slide(slide, backend="openslide")


def test_tissue_mask(files: dict[str, Path]) -> None:
    with open_slide(files["subifd"]) as slide:
        mask, (dx, dy) = slide_tissue_mask(slide, max_size=375)
    assert mask.shape == (300, 375) and (dx, dy) == (4.0, 4.0)
    truth = disk_labels((H, W), DISKS)[::4, ::4] > 0
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.95
    assert tile_has_tissue(mask, 4.0, 350, 250, 100, 100)  # inside the first disk
    assert not tile_has_tissue(mask, (dx, dy), 0, 1100, 100, 100)  # empty corner
    assert not tile_has_tissue(mask, 4.0, 1500, 0, 100, 100)  # outside the slide
    assert not tile_has_tissue(mask, 4.0, 230, 300, 100, 100, min_fraction=0.9)  # disk edge
    rng = np.random.default_rng(2)
    blank = np.clip(245 + rng.normal(0, 3, (300, 375, 3)), 0, 255).astype(np.uint8)
    assert not tissue_mask(blank).any()
    assert not tissue_mask(np.full((50, 60, 3), 255, np.uint8)).any()
    with pytest.raises(InputError, match="RGB uint8"):
        tissue_mask(np.zeros((10, 10), np.uint8))


@pytest.mark.parametrize(("region", "downsample"), [(None, 1.0), ((130, 70, 900, 700), 1.0),
                                                    ((130, 70, 900, 700), 2.0),
                                                    ((1300, 1000, 500, 500), 1.0)])
def test_tile_cores_partition_the_region(region, downsample: float) -> None:
    tiles = slide_tiles((W, H), 256, 48, region, downsample=downsample)
    x, y, w, h = check_region((W, H), region)
    gx0, gy0 = int(x // downsample), int(y // downsample)
    gx1, gy1 = -(-(x + w) // int(downsample)), -(-(y + h) // int(downsample))
    count = np.zeros((H, W), np.int32)
    for t in tiles:
        x0, y0, x1, y1 = t.core
        assert t.x <= x0 < x1 <= t.x + t.size and t.y <= y0 < y1 <= t.y + t.size
        count[y0:y1, x0:x1] += 1
        assert count[t.core_slices[0].start + t.y, t.core_slices[1].start + t.x] >= 1
        assert (int(t.location[0] // downsample), int(t.location[1] // downsample)) == \
            (t.x, t.y)
    assert (count[gy0:gy1, gx0:gx1] == 1).all() and count.sum() == (gy1 - gy0) * (gx1 - gx0)
    ids = [t.id for t in tiles]
    assert len(set(ids)) == len(ids)
    assert ids == [t.id for t in slide_tiles((W, H), 256, 48, region, downsample=downsample)]
    assert [t.index for t in tiles] == list(range(len(tiles)))


def test_region_checks() -> None:
    assert check_region((W, H), (1400, -10, 500, 100)) == (1400, 0, 100, 90)  # cut at the edges
    with pytest.raises(InputError, match="1500 x 1200"):
        slide_tiles((W, H), 256, 32, (1600, 100, 50, 50))
    with pytest.raises(InputError, match="positive"):
        slide_tiles((W, H), 256, 32, (10, 10, 0, 50))
    with pytest.raises(ConfigError, match="overlap"):
        slide_tiles((W, H), 256, 256)


def test_tiles_read_through_the_reader(files: dict[str, Path], source: np.ndarray) -> None:
    """Tile windows read at level 1 hold the level's pixels; cores stitch back the level."""
    level1 = _levels(source)[1]
    out = np.zeros_like(level1)
    with open_slide(files["subifd"]) as slide:
        for t in slide_tiles(slide.dimensions, 256, 32, downsample=2.0):
            window = slide.read_region(*t.location, t.size, t.size, level=1)
            np.testing.assert_array_equal(window, _expected(level1, t.x, t.y, t.size, t.size))
            x0, y0, x1, y1 = t.core
            out[y0:y1, x0:x1] = window[t.core_slices]
    np.testing.assert_array_equal(out, level1)
