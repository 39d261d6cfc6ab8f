"""SegmentOptions, ScaleRequest and SlideOptions: each setting declared once, checked once, and
the scale policy's order (user's scale, pixel size or diameter; the file's pixel size; the
estimate; the model's scale)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import sac
from sac.cli.main import build_parser
from sac.core.errors import ConfigError
from sac.model import create_model
from sac.pipeline.options import SegmentOptions, option_flags
from sac.pipeline.scale import ScaleRequest, given_scale, slide_scale
from sac.pipeline.segmenter import Segmenter
from sac.slides.options import SlideOptions


def test_options_checked_once_with_their_names() -> None:
    with pytest.raises(ConfigError, match="mask resolution must be one of input, model"):
        SegmentOptions(mask_resolution="full")
    with pytest.raises(ConfigError, match="batch_size"):
        SegmentOptions(batch_size=0)
    with pytest.raises(ConfigError, match="tta must be one of"):
        SegmentOptions(tta=3)
    with pytest.raises(ConfigError, match="unknown segmentation option"):
        SegmentOptions().replace(tile=512)
    with pytest.raises(ConfigError, match="auto_scale must be True or False"):
        SegmentOptions(auto_scale="no")  # type: ignore[arg-type]
    assert SegmentOptions().replace(tile_size=512).tile_size == 512


def test_segmenter_takes_options_or_changes_by_name() -> None:
    model = create_model(tiny=True)
    a = Segmenter(model, SegmentOptions(mask_resolution="model", batch_size=8))
    b = Segmenter(model, mask_resolution="model", batch_size=8)
    assert a.options == b.options and a.config_dict() == b.config_dict()
    off = Segmenter(model, fill=False)  # the model's completion switched off, model unchanged
    assert off.thresholds == model.config.thresholds.without_fill()
    with pytest.raises(ConfigError, match="overlap must be in"):
        Segmenter(model, overlap=10_000)


def test_segment_command_flags_come_from_the_options() -> None:
    """Every settable field has its flag on ``sac segment`` with the field's default, and the
    parsed flags give back the options."""
    from sac.cli.common import options_from

    args = build_parser().parse_args(["segment", "x.png", "-o", "out"])
    assert options_from(args) == SegmentOptions()
    flags = ["--tile-size", "512", "--overlap", "16", "--batch-size", "8", "--no-fill",
             "--mask-resolution", "model", "--no-auto-scale", "--precision", "fp32",
             "--runtime", "torch"]
    args = build_parser().parse_args(["segment", "x.png", "-o", "out", *flags])
    assert options_from(args) == SegmentOptions("fp32", "torch", 512, 16, 8, "model", False,
                                                False)
    assert set(option_flags()) == {"precision", "runtime", "tile_size", "overlap",
                                   "batch_size", "mask_resolution", "auto_scale", "fill"}
    assert build_parser().parse_args(["segment", "x", "-o", "o", "--bf16"]).precision == "bf16"


def _config(**kw):  # a model config with the fields the policy reads
    return dataclasses.replace(create_model(tiny=True, **kw).config)


def test_scale_policy_order() -> None:
    cfg = _config(pixel_size_um=0.5, input_scale=0.5, nucleus_diameter=12.0)
    assert given_scale(cfg, ScaleRequest()).scale is None  # nothing known: estimate
    assert given_scale(cfg, ScaleRequest(scale=0.8)).scale == 0.8
    assert given_scale(cfg, ScaleRequest(pixel_size=0.25)).scale == 0.5
    assert given_scale(cfg, ScaleRequest(diameter=24.0)).scale == 0.5
    assert given_scale(cfg, ScaleRequest(diameter=24.0)).source == "diameter"
    # the user's wins over the file's; the file's over the estimate
    assert given_scale(cfg, ScaleRequest(scale=2.0, file_pixel_size=0.25)).scale == 2.0
    filed = given_scale(cfg, ScaleRequest(file_pixel_size=0.25))
    assert filed.scale == 0.5 and "file's pixel size, 0.25 um" in filed.note
    odd = given_scale(cfg, ScaleRequest(file_pixel_size=90.0))  # 180x: implausible
    assert odd.scale is None and "implausible" in odd.note
    with pytest.raises(ConfigError, match="give one of scale, pixel size and diameter"):
        ScaleRequest(scale=1.0, diameter=10.0)
    with pytest.raises(ConfigError, match="does not record the nucleus size"):
        given_scale(_config(), ScaleRequest(diameter=10.0))


def test_slide_scale_picks_the_level_from_a_pixel_size() -> None:
    cfg = _config(pixel_size_um=0.5, input_scale=0.5)
    ds = [1.0, 4.0, 16.0]
    level_for = lambda d: max(i for i, x in enumerate(ds) if x <= d)  # noqa: E731
    # 0.25 um slide for a 0.5 um model: level 0, halved
    assert slide_scale(cfg, ScaleRequest(file_pixel_size=0.25), None, ds, level_for)[:2] \
        == (0, 0.5)
    # 0.125 um (80x): the model's pixel is 4 level-0 pixels: level 1 as is
    assert slide_scale(cfg, ScaleRequest(file_pixel_size=0.125), None, ds, level_for)[:2] \
        == (1, 1.0)
    # the user's pixel size wins over the slide's
    assert slide_scale(cfg, ScaleRequest(pixel_size=0.125, file_pixel_size=0.25), None, ds,
                       level_for)[:2] == (1, 1.0)
    # a given level keeps its pixel size: level 2 of a 0.125 um slide is 2 um, scale 4
    assert slide_scale(cfg, ScaleRequest(file_pixel_size=0.125), 2, ds, level_for)[:2] \
        == (2, 4.0)
    # a scale is used as given at level 0; nothing known: the model's scale, to estimate
    assert slide_scale(cfg, ScaleRequest(scale=0.7), None, ds, level_for)[:2] == (0, 0.7)
    lvl, scale, given = slide_scale(cfg, ScaleRequest(), None, ds, level_for)
    assert (lvl, scale, given.scale) == (0, 0.5, None)


def test_slide_options_checked() -> None:
    with pytest.raises(ConfigError, match="overlap"):
        SlideOptions(chunk=256, overlap=256)
    with pytest.raises(ConfigError, match="region width and height"):
        SlideOptions(region=(0, 0, 0, 10))
    with pytest.raises(ConfigError, match="unknown slide option"):
        SlideOptions().replace(chunk_size=512)
    assert SlideOptions(region=(1, 2, 3, 4)).region == (1, 2, 3, 4)


def test_public_names() -> None:
    assert sac.SegmentOptions is SegmentOptions and sac.ScaleRequest is ScaleRequest
    assert sac.SlideOptions is SlideOptions
    from sac.metrics.evaluate import evaluate
    from sac.training.tune_run import tune

    assert sac.evaluate is evaluate and sac.tune is tune


def test_segment_with_a_scale_request_records_its_source() -> None:
    from synthetic import disk_image

    model = create_model(tiny=True, pixel_size_um=0.5, input_scale=0.5)
    image, _ = disk_image((96, 96), [(40, 40, 10)])
    res = Segmenter(model).segment(image, scale=ScaleRequest(file_pixel_size=0.25))
    assert res.size.scale == 0.5 and "file's pixel size" in res.size.note
    assert np.asarray(res.labels).shape == (96, 96)


def test_evaluate_and_tune_from_python(tmp_path) -> None:
    """sac.evaluate scores saved labels (the truth itself: perfect) or a model, recording the
    model's settings; sac.tune refuses to write over a shipped model, before any work."""
    import json

    import tifffile

    from synthetic import write_disk_folder

    data = write_disk_folder(tmp_path / "data", n=2, size=96)
    pred = tmp_path / "pred"
    pred.mkdir()
    for f in sorted((data / "labels").iterdir()):
        tifffile.imwrite(pred / f"{f.stem}_labels.tif", tifffile.imread(f))
    report = sac.evaluate(data, "folder", predictions=pred)
    assert report.n_scored == 2 and report.aggregate["aji"] == pytest.approx(1.0)
    assert report.model is None
    model = sac.save_model(create_model(tiny=True), tmp_path / "m")
    run = sac.evaluate(data, "folder", model=model, limit=1,
                       options=SegmentOptions(precision="fp32", mask_resolution="model"))
    assert run.n_scored == 1 and run.model["precision"] == "fp32"
    assert run.model["config"]["mask_resolution"] == "model"
    assert json.loads(json.dumps(run.to_json_dict()))["model"]["model"] == str(model)
    with pytest.raises(ConfigError, match="exactly one of model= and predictions="):
        sac.evaluate(data, "folder")
    with pytest.raises(ConfigError, match="read-only"):
        sac.tune("sac-lite-monuseg", data, "folder", "monuseg")
