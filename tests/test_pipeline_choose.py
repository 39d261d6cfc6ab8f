"""``--model auto``: the image's type picks the shipped specialist, per image, and says so."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from sac.core.images import image_type
from sac.pipeline.choose import MODEL_FOR, AutoSegmenter
from sac.pipeline.result import SegmentResult
from sac.pipeline.size import SizeEstimate

from synthetic import disk_labels


def _fluorescence() -> np.ndarray:
    lab = disk_labels((96, 96), [(30, 30, 9), (60, 64, 10)])
    return np.where(lab > 0, 200, 12).astype(np.uint8)


def _he() -> np.ndarray:
    lab = disk_labels((96, 96), [(30, 30, 9), (60, 64, 10)])
    rgb = np.empty((96, 96, 3), np.uint8)
    rgb[:] = (235, 170, 205)  # eosin-pink stroma
    rgb[lab > 0] = (90, 60, 150)  # hematoxylin-blue nuclei
    return rgb


def _gray_brightfield() -> np.ndarray:
    lab = disk_labels((96, 96), [(30, 30, 9), (60, 64, 10)])
    g = np.where(lab > 0, 70, 210).astype(np.uint8)
    return np.stack([g] * 3, -1)


def test_image_type_tells_the_three_apart() -> None:
    assert image_type(_fluorescence()) == "fluorescence"
    assert image_type(_fluorescence().astype(np.uint16) * 200) == "fluorescence"
    assert image_type(_he()) == "histology"
    assert image_type(_gray_brightfield()) == "brightfield"
    dense = _he()
    dense[:] = (120, 80, 130)  # a dense, dark H&E tile: median gray 110 -> 98 below
    dense[::2] = (110, 60, 120)
    dense = (dense.astype(np.float32) * 0.85).astype(np.uint8)
    assert image_type(dense) == "histology"  # MoNuSeg's TCGA-NH-A8F7 was "fluorescence"


class _Fake:
    """A stand-in segmenter that records what it segmented."""

    def __init__(self, name: str) -> None:
        self.name, self.seen = name, 0

    def config_dict(self) -> dict[str, str]:
        return {"name": self.name}

    def segment(self, image: np.ndarray, source: str = "image", **_: object) -> SegmentResult:
        self.seen += 1
        return SegmentResult(np.zeros(image.shape[:2], np.uint32), None, {}, 0,
                             size=SizeEstimate(None, 0, 1.0, "model", "kept"))


def test_auto_picks_per_image_loads_once_and_says_which() -> None:
    loaded: list[str] = []

    def load(name: str) -> _Fake:
        loaded.append(name)
        return _Fake(name)

    auto = AutoSegmenter(load)
    res = [auto.segment(im, f"i{k}") for k, im in
           enumerate([_fluorescence(), _he(), _fluorescence(), _gray_brightfield()])]
    assert loaded == [MODEL_FOR["fluorescence"], MODEL_FOR["histology"]]  # each once
    assert res[0].size.note == f"model {MODEL_FOR['fluorescence']} (auto: fluorescence " \
                               "image); kept"
    assert "sac-lite-monuseg" in res[1].size.note and "histology" in res[1].size.note
    assert "brightfield image" in res[3].size.note
    assert auto.for_slides() is auto.pick(_he())[0]  # slides: the bright-field stain model
    assert auto.config_dict()["routing"] == MODEL_FOR  # what sac evaluate reports


@pytest.mark.weights
def test_segment_command_with_model_auto(tmp_path: Path, capsys) -> None:
    from sac.cli.main import main

    folder = tmp_path / "in"
    folder.mkdir()
    iio.imwrite(folder / "fluo.png", _fluorescence())
    iio.imwrite(folder / "he.png", _he())
    out = tmp_path / "out"
    assert main(["segment", str(folder), "-o", str(out), "--model", "auto",
                 "--no-auto-scale"]) == 0
    said = capsys.readouterr()
    text = said.out + said.err
    assert "model sac-lite-dsb2018 (auto: fluorescence image)" in text
    assert "model sac-lite-monuseg (auto: histology image)" in text
    for stem in ("fluo", "he"):
        labels = iio.imread(out / f"{stem}_labels.tif")
        assert labels.shape == (96, 96)
    assert iio.imread(out / "fluo_labels.tif").max() == 2  # the DSB model finds both disks
