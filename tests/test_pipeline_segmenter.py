"""The inference pipeline: tiling and stitching, expert prompts, scale, model folders, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from sac.core.errors import ConfigError, InputError, WeightsError
from sac.core.resample import input_scale, resample_labels
from sac.core.tiles import owned_tiles
from sac.model import PromptConfig, SACConfig, create_model, load_model, save_model
from sac.pipeline.expert import ExpertPrompts, apply_expert, read_expert_csv
from sac.pipeline.segmenter import Segmenter

from oracle import OracleGenerator
from synthetic import disk_image, disk_labels, matched_ious

# disks centred on or across the seams of 160-px tiles overlapping by 48 on a 256-px image
SEAM_DISKS = [(100, 100, 14), (40, 160, 12), (160, 40, 13), (200, 100, 15), (100, 200, 12),
              (205, 205, 16), (40, 40, 11)]


@pytest.fixture(scope="module")
def box_model(lite_medsam):
    """Real LiteMedSAM prompted with boxes, with the brightness-based stand-in generator."""
    model = create_model(prompts=PromptConfig(mode="boxes"))
    model.generator = OracleGenerator()
    return model


@pytest.mark.weights
def test_tiled_equals_untiled(box_model) -> None:
    image, truth = disk_image((256, 256), SEAM_DISKS)
    whole = Segmenter(box_model, tile_size=256).segment(image)
    tiled = Segmenter(box_model, tile_size=160, overlap=48).segment(image)
    assert whole.n_nuclei == tiled.n_nuclei == len(SEAM_DISKS)
    assert min(matched_ious(whole.labels, tiled.labels)) >= 0.95
    assert min(matched_ious(truth, tiled.labels)) >= 0.9


@pytest.mark.weights
def test_scale_returns_labels_at_input_size(box_model) -> None:
    image, truth = disk_image((256, 256), SEAM_DISKS)
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)  # the same scene at 2x
    res = Segmenter(box_model).segment(big, scale=0.5, semantic=True)
    assert res.labels.shape == big.shape[:2]
    assert res.semantic is not None and res.semantic.shape == big.shape[:2]
    assert res.n_nuclei == len(SEAM_DISKS)
    up = np.repeat(np.repeat(truth, 2, axis=0), 2, axis=1)
    assert min(matched_ious(up, res.labels)) >= 0.85


@pytest.mark.weights
def test_expert_prompts_add_and_remove(box_model) -> None:
    disks = [(60, 60, 14), (180, 180, 14)]
    image, _ = disk_image((256, 256), disks)
    auto = Segmenter(box_model).segment(image)
    assert auto.n_nuclei == 2
    # a negative click removes the nucleus under it
    neg = ExpertPrompts(np.array([[60.0, 60.0]]), np.array([0]))
    assert Segmenter(box_model).segment(image, expert=neg).n_nuclei == 1


def test_apply_expert_edits_detections() -> None:
    det = disk_labels((64, 64), [(20, 20, 6), (44, 44, 6)])
    out = apply_expert(det, ExpertPrompts(np.array([[20, 20], [50, 10]], np.float32),
                                          np.array([0, 1])))
    assert 1 not in np.unique(out) and out[20, 20] == 0  # removed
    assert out[10, 50] == 3 and (out == 3).sum() > 50  # a new nucleus of the median size
    assert (out == 2).sum() == (det == 2).sum()


def test_expert_csv(tmp_path: Path) -> None:
    good = tmp_path / "p.csv"
    good.write_text("x,y,label,name\n10,20,1,a\n30.5,40,0,b\n5,6,,c\n")
    ex = read_expert_csv(good)
    assert ex.points.tolist() == [[10, 20], [30.5, 40], [5, 6]]
    assert ex.labels.tolist() == [1, 0, 1]
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,oops\n")
    with pytest.raises(InputError, match="line 2"):
        read_expert_csv(bad)
    nohdr = tmp_path / "nohdr.csv"
    nohdr.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="columns x and y"):
        read_expert_csv(nohdr)
    with pytest.raises(InputError, match="outside"):
        ex.check_inside((15, 15), "img.png")


def test_owned_tiles_partition_the_image() -> None:
    for shape, tile, overlap in [((256, 256), 160, 48), ((300, 517), 128, 32), ((64, 64), 64, 0)]:
        count = np.zeros(shape, np.int32)
        for o in owned_tiles(shape, tile, overlap):
            count[o.image] += 1
            ys, xs = o.local
            assert ys.start >= 0 and ys.stop <= tile and xs.start >= 0 and xs.stop <= tile
        assert (count == 1).all()


def test_scale_helpers() -> None:
    lab = np.array([[1, 2], [3, 4]], np.uint32)
    assert resample_labels(lab, (4, 4)).tolist()[0] == [1, 1, 2, 2]
    assert input_scale(0.5, 0.5, scale=None, pixel_size=0.25) == 0.5
    assert input_scale(0.5, None) == 0.5
    assert input_scale(0.5, None, scale=2.0) == 2.0
    with pytest.raises(ConfigError, match="does not record"):
        input_scale(1.0, None, pixel_size=0.25)
    with pytest.raises(ConfigError):
        input_scale(1.0, 0.5, scale=1.0, pixel_size=0.5)
    with pytest.raises(ConfigError, match="--pixel-size must be in"):  # before any allocation
        input_scale(0.5, 0.5, pixel_size=1000.0)
    with pytest.raises(ConfigError, match="resampling by 100"):
        input_scale(0.5, 0.5, pixel_size=50.0)
    with pytest.raises(ConfigError, match="finite"):
        input_scale(0.5, 0.5, scale=float("nan"))


# --- model folders -------------------------------------------------------------------------


def test_model_folder_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(tiny=True)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(0.01)
    folder = save_model(model, tmp_path / "m")
    assert {p.name for p in folder.iterdir()} == {
        "config.json", "base.safetensors", "lora.safetensors", "mask_decoder.safetensors",
        "generator.safetensors"}
    again = load_model(folder)
    for (k, v), w in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    with pytest.raises(InputError, match="already exists"):
        save_model(model, folder)
    half = load_model(save_model(model, tmp_path / "h", dtype="float16"))
    g1, g2 = model.generator.state_dict(), half.generator.state_dict()
    assert all(torch.allclose(g1[k], g2[k], atol=1e-3, rtol=1e-3) for k in g1)


def test_model_folder_validation(tmp_path: Path) -> None:
    folder = save_model(create_model(tiny=True), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    # a wrong base sha256 is refused
    bad = dict(cfg, base=dict(cfg["base"], sha256="0" * 64))
    (folder / "config.json").write_text(json.dumps(bad))
    with pytest.raises(WeightsError, match="sha256"):
        load_model(folder)
    # an unknown key is named
    (folder / "config.json").write_text(json.dumps(dict(cfg, colour="blue")))
    with pytest.raises(ConfigError, match="colour"):
        load_model(folder)
    # a folder from before the centre-target choice loads with the Gaussian target it used
    old = {k: v for k, v in cfg.items() if k != "centre_target"}
    (folder / "config.json").write_text(json.dumps(old))
    assert load_model(folder).config.centre_target == "gaussian"
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "generator.safetensors").unlink()
    with pytest.raises(WeightsError, match=r"generator\.safetensors is missing"):
        load_model(folder)
    (folder / "generator.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="corrupt"):
        load_model(folder)
    with pytest.raises(ConfigError, match="neither a model folder"):
        load_model(tmp_path / "nope")


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="prompt mode"):
        PromptConfig(mode="clicks")  # type: ignore[arg-type]
    cfg = create_model(tiny=True).config.to_dict()
    with pytest.raises(ConfigError, match="format_version"):
        SACConfig.from_dict(dict(cfg, format_version=99))
    with pytest.raises(ConfigError, match="lora_rank"):
        SACConfig.from_dict(dict(cfg, lora_rank="four"))


@pytest.mark.weights
def test_bundled_model_records_base_sha(tmp_path: Path, lite_medsam) -> None:
    from sac.sam.weights import LITEMEDSAM_SHA256

    model = create_model()
    folder = save_model(model, tmp_path / "real", dtype="float16")
    assert model.config.base.sha256 == LITEMEDSAM_SHA256
    assert not (folder / "base.safetensors").exists()
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 15e6
    load_model(folder)


def test_segment_cli_batch_continues_past_bad_files(tmp_path: Path, capsys) -> None:
    import imageio.v3 as iio

    from sac.cli import main

    torch.manual_seed(0)
    model = save_model(create_model(tiny=True), tmp_path / "model")
    src = tmp_path / "in"
    src.mkdir()
    image, _ = disk_image((96, 120))
    iio.imwrite(src / "good.png", image)
    (src / "empty.png").write_bytes(b"")
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    tifffile.imwrite(src / "stack4d.tif", np.zeros((2, 3, 16, 16), np.uint8),
                     photometric="minisblack")
    out = tmp_path / "out"
    code = main(["segment", str(src), str(tmp_path / "missing*.png"), "-o", str(out),
                 "--model", str(model), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert sorted(p.name for p in out.iterdir()) == ["good_labels.tif"]
    for name in ("empty.png", "corrupt.png", "stack4d.tif", "missing*.png"):
        assert name in err
    assert "4 failure(s)" in err
    labels = tifffile.imread(out / "good_labels.tif")
    assert labels.shape == (96, 120) and labels.dtype == np.uint16
    # a model folder with a missing part: exit 3 (weights), naming the file
    (model / "mask_decoder.safetensors").unlink()
    code = main(["segment", str(src / "good.png"), "-o", str(tmp_path / "o2"), "--model",
                 str(model)])
    assert code == 3 and "mask_decoder.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_segment_cli_expert_csv_needs_one_input(tmp_path: Path, capsys) -> None:
    import imageio.v3 as iio

    from sac.cli import main

    model = save_model(create_model(tiny=True), tmp_path / "model")
    image, _ = disk_image((64, 64))
    for name in ("a.png", "b.png"):
        iio.imwrite(tmp_path / name, image)
    csv = tmp_path / "p.csv"
    csv.write_text("x,y\n10,10\n")
    code = main(["segment", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                 str(tmp_path / "o"), "--model", str(model), "--prompts", str(csv)])
    assert code == 4 and "one input" in capsys.readouterr().err
    code = main(["segment", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model",
                 str(model), "--prompts", str(csv), "--quiet"])
    assert code == 0 and (tmp_path / "o" / "a_labels.tif").is_file()


@pytest.mark.weights
def test_segment_cli_writes_every_format(tmp_path: Path, box_model, monkeypatch) -> None:
    import csv
    import dataclasses
    import zipfile

    import imageio.v3 as iio

    import sac.pipeline.segmenter as segment_module
    from sac.cli import main
    from sac.data.images import read_pixel_size_um

    # the stand-in generator cannot be saved, so the CLI gets the model in memory; it says it
    # works at 0.5 um per pixel
    monkeypatch.setattr(box_model, "config",
                        dataclasses.replace(box_model.config, pixel_size_um=0.5))
    monkeypatch.setattr(segment_module, "load_model", lambda *a, **k: box_model)
    folder = tmp_path / "model"
    image, _ = disk_image((256, 256), SEAM_DISKS)
    iio.imwrite(tmp_path / "img.png", image)
    out = tmp_path / "out"
    code = main(["segment", str(tmp_path / "img.png"), "-o", str(out), "--model", str(folder),
                 "--save-overlay", "--save-geojson", "--save-rois", "--save-csv",
                 "--save-semantic", "--pixel-size", "0.5", "--quiet"])
    assert code == 0
    labels = tifffile.imread(out / "img_labels.tif")
    n = int(labels.max())
    assert n == len(SEAM_DISKS)
    assert len(json.loads((out / "img.geojson").read_text())["features"]) == n
    assert len(zipfile.ZipFile(out / "img_rois.zip").namelist()) == n
    rows = list(csv.DictReader((out / "img_nuclei.csv").open()))
    assert sorted(int(float(r["area_px"])) for r in rows) == sorted(
        np.bincount(labels.ravel())[1:].tolist())
    assert iio.imread(out / "img_overlay.png").shape == (256, 256, 3)
    assert read_pixel_size_um(out / "img_labels.tif") == pytest.approx(0.5)
    assert float(rows[0]["area_um2"]) == pytest.approx(float(rows[0]["area_px"]) * 0.25)


def test_tune_detection_finds_disk_thresholds() -> None:
    from sac.training.sampler import TrainImage
    from sac.training.tune import apply_tuning, tune_detection

    model = create_model(tiny=True)
    model.generator = OracleGenerator()
    image, truth = disk_image((128, 128), [(30, 30, 10), (40, 95, 9), (95, 60, 12)])
    from sac.core.images import to_rgb_float

    res = tune_detection(model, [TrainImage("a", to_rgb_float(image), truth)])
    assert res.score == 1.0 and len(res.table) == 3 * 5 * 3  # the grid plus the defaults
    assert (res.fg, res.centre) == (0.5, 0.3)  # ties keep the current setting
    apply_tuning(model, res)
    assert model.config.thresholds.centre == res.centre


def test_segment_cli_channel_and_full_disk(tmp_path: Path, capsys, monkeypatch) -> None:
    import errno

    import imageio.v3 as iio

    import sac.outputs.images as formats
    from sac.cli import main
    from sac.data.images import read_image

    model = save_model(create_model(tiny=True), tmp_path / "model")
    image, _ = disk_image((64, 80))
    stack = np.stack([np.zeros((64, 80), np.uint8), image[..., 0]])  # nuclei on page 1
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    assert np.array_equal(read_image(tmp_path / "stack.tif", channel=1), image[..., 0])
    with pytest.raises(InputError, match="out of range"):
        read_image(tmp_path / "stack.tif", channel=2)
    out = tmp_path / "out"
    base = ["segment", str(tmp_path / "stack.tif"), "-o", str(out), "--model", str(model),
            "--quiet"]
    assert main([*base, "--channel", "1", "--save-csv"]) == 0
    assert (out / "stack_labels.tif").is_file()
    # a full disk while writing: clear message, nothing of that image left behind
    iio.imwrite(tmp_path / "b.png", image)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(formats, "write_png", full)
    code = main(["segment", str(tmp_path / "b.png"), "-o", str(out), "--model", str(model),
                 "--save-overlay", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "No space left" in err and "b.png" in err
    assert not (out / "b_labels.tif").exists() and not (out / "b_overlay.png").exists()


def _fine_disks(scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Disks drawn at ``scale`` x the resolution of SEAM_DISKS (smooth edges, not blocks)."""
    spec = [(cy * scale, cx * scale, r * scale) for cy, cx, r in SEAM_DISKS]
    return disk_image((256 * scale, 256 * scale), spec)


@pytest.mark.weights
def test_masks_decoded_at_input_resolution(box_model) -> None:
    """Logits upsampled before thresholding give finer edges than resized labels."""
    image, truth = _fine_disks(2)
    fine = Segmenter(box_model).segment(image, scale=0.5)
    coarse = Segmenter(box_model, mask_resolution="model").segment(image, scale=0.5)
    assert fine.labels.shape == coarse.labels.shape == truth.shape
    assert fine.n_nuclei == coarse.n_nuclei == len(SEAM_DISKS)
    # labels resized from the half-resolution grid are constant on 2x2 blocks; fine ones not
    blocks = coarse.labels.reshape(256, 2, 256, 2)
    assert (blocks == blocks[:, :1, :, :1]).all()
    fb = fine.labels.reshape(256, 2, 256, 2)
    assert not (fb == fb[:, :1, :, :1]).all()
    iou_fine, iou_coarse = matched_ious(truth, fine.labels), matched_ious(truth, coarse.labels)
    assert min(iou_fine) >= 0.85
    assert np.mean(iou_fine) >= np.mean(iou_coarse) - 0.005


@pytest.mark.weights
def test_input_resolution_masks_at_a_non_integer_scale(box_model) -> None:
    image, truth = disk_image((256, 256), SEAM_DISKS)
    res = Segmenter(box_model).segment(image, scale=0.7, semantic=True)
    assert res.labels.shape == res.semantic.shape == truth.shape
    assert res.n_nuclei == len(SEAM_DISKS)
    assert min(matched_ious(truth, res.labels)) >= 0.85


def test_mask_resolution_checked() -> None:
    model = create_model(tiny=True)
    with pytest.raises(ConfigError, match="mask resolution"):
        Segmenter(model, mask_resolution="full")


def test_segment_command_mask_resolution(tmp_path: Path, monkeypatch) -> None:
    import imageio.v3 as iio

    from sac.cli import main

    image, _ = disk_image((96, 96), [(30, 30, 9), (60, 70, 10)])
    iio.imwrite(tmp_path / "im.png", image)
    save_model(create_model(tiny=True), tmp_path / "m")
    seen = []
    real = Segmenter.segment

    def spy(self, *args, **kwargs):
        seen.append(self.options.mask_resolution)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "segment", spy)
    base = ["segment", str(tmp_path / "im.png"), "--model", str(tmp_path / "m"), "--quiet"]
    assert main([*base, "-o", str(tmp_path / "a")]) == 0
    assert main([*base, "-o", str(tmp_path / "b"), "--mask-resolution", "model"]) == 0
    assert seen == ["input", "model"]
    assert tifffile.imread(tmp_path / "b" / "im_labels.tif").shape == (96, 96)
