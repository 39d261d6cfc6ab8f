"""Training on several datasets at once: the mixed reader, splits, crop shares, the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from sac.cli import main
from sac.core.errors import ConfigError
from sac.data import FolderDataset
from sac.data.mixed import MixedDataset, prefixed
from sac.data.open import dataset_keys, open_training_data
from sac.model import load_model
from sac.training.augment import AugmentConfig
from sac.training.sampler import CropSampler, TrainImage, load_images
from sac.training.size_fit import spread_by_source

from synthetic import write_disk_folder


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mixed")
    return (write_disk_folder(root / "a", n=6, size=128, seed=0),
            write_disk_folder(root / "b", n=7, size=96, seed=1))


def test_mixed_dataset_names_and_reading(two_folders: tuple[Path, Path]) -> None:
    a, b = FolderDataset(two_folders[0]), FolderDataset(two_folders[1])
    mixed = MixedDataset({"one": a, "two": b})
    assert len(mixed) == 13
    assert mixed.names == prefixed("one", a.names) + prefixed("two", b.names)
    sample = mixed["two/im3"]
    direct = b["im3"]
    assert sample.name == "two/im3" and sample.image.shape == (96, 96, 3)
    assert np.array_equal(sample.image, direct.image)
    assert np.array_equal(sample.labels, direct.labels)
    assert mixed.source_of("one/im0") == "one" and a.source_of("im0") == ""
    assert np.array_equal(mixed.read_image("one/im1"), a.read_image("im1"))
    with pytest.raises(KeyError, match="does not start with"):
        mixed.source_of("three/im0")
    with pytest.raises(ConfigError, match="at least two"):
        MixedDataset({"one": a})
    with pytest.raises(ConfigError, match="free of"):
        MixedDataset({"o/ne": a, "two": b})


def test_mixed_dataset_keeps_problems(tmp_path: Path, two_folders: tuple[Path, Path]) -> None:
    broken = write_disk_folder(tmp_path / "c", n=5)
    (broken / "labels" / "im2.tif").unlink()  # an image without labels
    part = FolderDataset(broken)
    assert len(part.problems) == 1
    mixed = MixedDataset({"a": FolderDataset(two_folders[0]), "c": part})
    assert [p.name for p in mixed.problems] == ["c/im2"]
    assert "c/im2" not in mixed.names and len(mixed) == 10


def test_open_training_data(two_folders: tuple[Path, Path]) -> None:
    a, b = two_folders
    single, train, val = open_training_data([a], ["folder"], [None], seed=0)
    assert isinstance(single, FolderDataset) and len(train) + len(val) == 6
    mixed, train, val = open_training_data([a, b], ["folder"], [None], seed=0)
    assert isinstance(mixed, MixedDataset) and sorted(mixed.parts) == ["folder", "folder-2"]
    assert len(train) + len(val) == 13 and set(train).isdisjoint(val)
    assert {mixed.source_of(n) for n in val} == {"folder", "folder-2"}  # each part validates
    assert dataset_keys(["monuseg", "dsb2018", "monuseg", "monuseg"]) == [
        "monuseg", "dsb2018", "monuseg-2", "monuseg-3"]
    with pytest.raises(ConfigError, match="--format was given 3 times for 2"):
        open_training_data([a, b], ["folder"] * 3, [None], seed=0)
    with pytest.raises(ConfigError, match="--split was given 2 times for 1"):
        open_training_data([a], ["folder"], [None, None], seed=0)


def test_val_limit_and_size_head_images_per_source(two_folders: tuple[Path, Path]) -> None:
    mixed, _, _ = open_training_data(list(two_folders), ["folder"], [None], seed=0)
    images, problems = load_images(mixed, None, 1.0, limit=2)
    assert problems == []
    assert [im.name for im in images] == ["folder/im0", "folder/im1", "folder-2/im0",
                                          "folder-2/im1"]
    assert [im.source for im in images] == ["folder"] * 2 + ["folder-2"] * 2
    picked = spread_by_source(mixed, mixed.names, 4)
    assert [mixed.source_of(n) for n in picked] == ["folder"] * 2 + ["folder-2"] * 2


def _image(name: str, side: int, source: str) -> TrainImage:
    labels = np.zeros((side, side), np.int32)
    labels[side // 4: side // 2, side // 4: side // 2] = 1
    return TrainImage(name, np.full((side, side, 3), 0.5, np.float32), labels, source)


def test_each_source_gets_an_equal_share_of_crops() -> None:
    images = [_image("big", 256, "h&e")] + [_image(f"s{i}", 64, "fluo") for i in range(9)]
    cfg = AugmentConfig.for_modality("any")
    mixed = CropSampler(images, 64, cfg)
    weights = {src: sum(w for im, w in zip(images, mixed.weights, strict=True)
                        if im.source == src) for src in ("h&e", "fluo")}
    assert weights == pytest.approx({"h&e": 0.5, "fluo": 0.5})
    assert all(c.rgb.shape == (64, 64, 3) for c in mixed.batch(seed=0, step=0, batch_size=4))
    # one source: chosen by area, as before (the big image has 16x the area of a small one)
    single = CropSampler([TrainImage(im.name, im.rgb, im.labels) for im in images], 64, cfg)
    assert single.weights[0] == pytest.approx(16 / 25)


def test_a_source_given_a_share_gets_that_share_of_crops() -> None:
    """--share 2 --share 1: two thirds of the crops from the first source, whatever its size
    (here a quarter of the pixels), drawn so in practice too."""
    images = [_image("big", 256, "h&e")] + [_image(f"s{i}", 64, "fluo") for i in range(9)]
    cfg = AugmentConfig(flips_rotations=False, intensity=False)
    sampler = CropSampler(images, 64, cfg, shares={"fluo": 2.0, "h&e": 1.0})
    weights = {src: sum(w for im, w in zip(images, sampler.weights, strict=True)
                        if im.source == src) for src in ("h&e", "fluo")}
    assert weights == pytest.approx({"h&e": 1 / 3, "fluo": 2 / 3})
    assert sampler.weights[1] == pytest.approx(2 / 27)  # within a source, by area as before
    with pytest.raises(ConfigError, match="a share given for source"):
        CropSampler(images, 64, cfg, shares={"dapi": 1.0})


def test_each_source_gets_its_own_augmentation() -> None:
    flat = AugmentConfig(flips_rotations=False, intensity=False)
    images = []
    for src, value in (("dark", 0.2), ("bright", 0.3)):
        im = _image(src, 64, src)
        im.rgb[:] = value
        images.append(im)
    sampler = CropSampler(images, 32, flat,
                          by_source={"bright": dataclasses.replace(flat, invert_prob=1.0)})
    assert sampler.augment_of("dark") is flat and sampler.augment_of("bright").invert_prob == 1
    values = {round(float(c.rgb[c.valid].mean()), 3)
              for c in sampler.batch(seed=0, step=0, batch_size=16)}
    assert values == {0.2, 0.7}  # the bright source's crops all inverted, the other's none
    with pytest.raises(ConfigError, match="no training image comes from"):
        CropSampler(images, 32, flat, by_source={"he": flat})


def test_train_cli_on_two_datasets(two_folders: tuple[Path, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_folders
    run = tmp_path / "run"
    args = ["train", "--data", str(a), "--data", str(b), "--format", "folder",
            "-o", str(run), "--tiny", "--epochs", "1", "--steps-per-epoch", "2", "--quiet",
            "--no-tune", "--augment", "robust", "--val-limit", "1"]
    assert main(args) == 0
    model = load_model(run / "model")
    training = model.config.training
    assert training["data"] == [str(a), str(b)] and training["format"] == "folder"
    assert training["train_images"] + training["val_images"] == 13
    assert training["val_images"] == 2  # one validation image from each source
    log = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert log["val_n_images"] == 2  # --val-limit counts per source in validation too
    settings = json.loads((run / "train_config.json").read_text())["train"]
    assert settings["augment"]["invert_prob"] > 0  # mixed data: inverted contrast included
    per_source = settings["source_augment"]  # each dataset augmented for its image type
    assert set(per_source) == {"folder", "folder-2"}
    assert all(c["invert_prob"] > 0 and not c["stain"] for c in per_source.values())
    head = model.config.size_head
    assert head is not None and head["train_images"] == 11
    bad = ["train", "--data", str(a), "--data", str(b), "--format", "folder", "--format",
           "folder", "--format", "folder", "-o", str(tmp_path / "bad"), "--tiny", "--quiet"]
    assert main(bad) == 4  # a configuration error
    assert "--format was given 3 times for 2 --data folders" in capsys.readouterr().err
    for shares in (["1"], ["1", "0"]):  # one per folder, positive
        bad = ["train", "--data", str(a), "--data", str(b), "--format", "folder", "-o",
               str(tmp_path / "bad"), "--tiny", "--quiet"]
        assert main(bad + [a for w in shares for a in ("--share", w)]) == 4
        assert "give one positive weight per folder" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_train_records_the_shares_of_two_datasets(two_folders: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    a, b = two_folders
    run = tmp_path / "run"
    assert main(["train", "--data", str(a), "--data", str(b), "--format", "folder",
                 "--share", "3", "--share", "1", "-o", str(run), "--tiny", "--epochs", "1",
                 "--steps-per-epoch", "1", "--quiet", "--no-tune", "--val-limit", "1"]) == 0
    settings = json.loads((run / "train_config.json").read_text())["train"]
    assert settings["source_shares"] == {"folder": 3.0, "folder-2": 1.0}
    assert "--share 3 --share 1" in load_model(run / "model").config.training["command"]
