"""Whole-slide segmentation: same nuclei as the in-memory path, regions, resuming, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from sac.core.errors import InputError
from sac.model import PromptConfig, create_model
from sac.pipeline.segmenter import Segmenter
from sac.slides.segment import segment_slide

from oracle import OracleGenerator
from synthetic import disk_image, grid_disks, matched_ious, write_pyramid

# disks across the seams of 256-px chunks overlapping by 96 (cores cut at 208 and 416)
DISKS = [(60, 60, 12), (60, 210, 13), (200, 205, 14), (210, 60, 12), (300, 420, 13),
         (420, 300, 12), (100, 500, 11), (430, 520, 14), (520, 100, 12), (330, 160, 13)]
SHAPE = (560, 600)


@pytest.fixture(scope="module")
def box_model(lite_medsam):
    model = create_model(prompts=PromptConfig(mode="boxes"), pixel_size_um=0.5)
    model.generator = OracleGenerator()
    return model


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    image, truth = disk_image(SHAPE, DISKS)
    return write_pyramid(tmp_path_factory.mktemp("slide") / "s.tif", image), image, truth


@pytest.mark.weights
def test_slide_path_matches_in_memory(box_model, slide, tmp_path: Path) -> None:
    path, image, truth = slide
    seg = Segmenter(box_model)
    direct = seg.segment((image / 255.0).astype(np.float32), normalized=True)
    res = segment_slide(seg, path, tmp_path, chunk=256, overlap=96, tissue=False,
                        return_labels=True, progress=False)
    assert res.level == 0 and res.n_chunks == 12  # 3 rows x 4 columns
    assert res.labels is not None and res.labels.shape == SHAPE
    assert res.n_nuclei == direct.n_nuclei == len(DISKS) == int(res.labels.max())
    assert min(matched_ious(direct.labels, res.labels)) >= 0.95
    assert min(matched_ious(truth, res.labels)) >= 0.9
    doc = json.loads((tmp_path / "s.geojson").read_text())
    assert len(doc["features"]) == len(DISKS)
    rows = list(csv.DictReader((tmp_path / "s_nuclei.csv").open()))
    assert len(rows) == len(DISKS) and float(rows[0]["area_um2"]) > 0
    assert not (tmp_path / "s.sac-parts").exists()  # resume files go once the run is done


@pytest.mark.weights
def test_region_offsets_and_resume(box_model, slide, tmp_path: Path) -> None:
    path, _, _ = slide
    seg = Segmenter(box_model)
    region = (180, 170, 300, 280)  # x, y, w, h
    calls = {"n": 0}

    def flaky(tile, status):  # interrupted once two chunks are done
        calls["n"] += status == "done"
        if calls["n"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        segment_slide(seg, path, tmp_path, region=region, chunk=256, overlap=96, tissue=False,
                      progress=False, on_chunk=flaky)
    assert len(list((tmp_path / "s.sac-parts").glob("x*.json"))) == 2
    calls["n"] = 10  # no more interruptions; count the chunks computed on resuming
    res = segment_slide(seg, path, tmp_path, region=region, chunk=256, overlap=96,
                        tissue=False, progress=False, on_chunk=flaky)
    assert res.n_resumed == 2 and calls["n"] == 10 + res.n_chunks - 2
    doc = json.loads((tmp_path / "s.geojson").read_text())
    xs = [x for f in doc["features"] for x, _ in f["geometry"]["coordinates"][0]]
    ys = [y for f in doc["features"] for _, y in f["geometry"]["coordinates"][0]]
    # polygons are in slide coordinates, centred inside the region
    assert min(xs) > 150 and max(xs) < 510 and min(ys) > 140 and max(ys) < 480
    with pytest.raises(InputError, match="600"):
        segment_slide(seg, path, tmp_path / "o", region=(5000, 5000, 10, 10), tissue=False,
                      progress=False)


@pytest.mark.weights
def test_blank_slide_has_no_tissue(box_model, tmp_path: Path, caplog) -> None:
    """A blank slide is a success with 0 nuclei, like a blank plain image (it used to be a
    failure, exit 2, retried forever by --skip-existing), and the warning says why."""
    path = write_pyramid(tmp_path / "blank.tif", np.full((400, 400, 3), 250, np.uint8))
    res = segment_slide(Segmenter(box_model), path, tmp_path, chunk=256, overlap=64,
                        progress=False)
    assert res.n_nuclei == 0 and res.n_skipped_no_tissue == res.n_chunks
    assert "no tissue" in caplog.text and "--no-tissue-mask" in caplog.text
    doc = json.loads((tmp_path / "blank.geojson").read_text())
    assert doc["features"] == []
    assert not (tmp_path / "blank.sac-parts").exists()


@pytest.mark.weights
def test_segment_cli_slide(box_model, slide, tmp_path: Path, monkeypatch, capsys) -> None:
    import sac.pipeline.segmenter as segment_module
    from sac.cli import main

    path, _, _ = slide
    monkeypatch.setattr(segment_module, "load_model", lambda *a, **k: box_model)
    args = ["segment", str(path), "--wsi", "-o", str(tmp_path), "--region", "0", "0", "300",
            "300", "--chunk-size", "320", "--no-tissue-mask", "--quiet"]
    assert main(args) == 0
    assert (tmp_path / "s.geojson").is_file() and (tmp_path / "s_nuclei.csv").is_file()
    assert main(args) == 2  # outputs exist
    assert "already exists" in capsys.readouterr().err
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"not a slide")
    assert main(["segment", str(bad), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    assert "bad.svs" in capsys.readouterr().err


@pytest.mark.weights
def test_slide_of_unknown_pixel_size_gets_one_estimated_scale(lite_medsam, tmp_path: Path
                                                              ) -> None:
    """Nuclei 80 px across on a slide without a pixel size: the scale is estimated once from
    sampled chunks, and every nucleus comes out whole."""
    model = create_model(prompts=PromptConfig(mode="boxes"), nucleus_diameter=20.0,
                         nucleus_diameter_range=(14.0, 28.0))
    model.generator = OracleGenerator()
    image, truth = grid_disks(40, n_side=4)  # 512 px
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, image, tile=(128, 128), photometric="rgb")
    res = segment_slide(Segmenter(model), path, tmp_path / "out", chunk=384, overlap=176,
                        tissue=False, return_labels=True, progress=False)
    assert res.size is not None and res.size.source == "estimated"
    assert res.size.scale == pytest.approx(0.25, rel=0.1)
    assert res.n_chunks == 4  # the overlap holds a whole nucleus (> 2 x 80 px)
    assert res.n_nuclei == 16 and min(matched_ious(truth, res.labels)) >= 0.8
