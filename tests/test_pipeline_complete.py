"""Completing instance labels from the semantic mask, alone and inside the segmenter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sac.core.errors import InputError
from sac.model import create_model, load_model, save_model
from sac.pipeline.complete import complete_from_semantic
from sac.pipeline.expert import ExpertPrompts
from sac.pipeline.segmenter import Segmenter

from synthetic import disk_image, disk_labels


def test_new_regions_and_attachment() -> None:
    labels = disk_labels((64, 64), [(20, 20, 6)])
    semantic = disk_labels((64, 64), [(20, 20, 8), (45, 45, 5), (10, 50, 1)]) > 0
    off, n = complete_from_semantic(labels, semantic)
    assert n == 0 and np.array_equal(off, labels)
    added, n = complete_from_semantic(labels, semantic, new_area=20)
    assert n == 1  # the 5-px disk is new; the 1-px speck is below new_area; the rim is not
    assert added[45, 45] == 2 and added[10, 50] == 0 and added[20, 27] == 0
    assert np.array_equal(added == 1, labels == 1)
    grown, n = complete_from_semantic(labels, semantic, attach=True)
    assert n == 0 and grown[20, 27] == 1 and grown[45, 45] == 0
    assert (grown == 1).sum() == (disk_labels((64, 64), [(20, 20, 8)]) > 0).sum()
    assert labels.max() == 1  # input untouched


def test_rim_goes_to_the_nearest_of_two_nuclei() -> None:
    labels = np.zeros((20, 40), np.uint32)
    labels[5:15, 5:15] = 1
    labels[5:15, 25:35] = 2
    semantic = np.zeros((20, 40), bool)
    semantic[5:15, 5:35] = True  # a bridge between the two
    out, _ = complete_from_semantic(labels, semantic, attach=True)
    assert (out[5:15, 15:20] == 1).all() and (out[5:15, 20:25] == 2).all()


def test_blocked_points_and_shape_check() -> None:
    labels = np.zeros((64, 64), np.uint32)
    semantic = disk_labels((64, 64), [(20, 20, 6), (45, 45, 6)]) > 0
    out, n = complete_from_semantic(labels, semantic, new_area=10,
                                    blocked=np.array([[45.0, 45.0]]))
    assert n == 1 and out[20, 20] == 1 and out[45, 45] == 0
    with pytest.raises(ValueError, match="differ in shape"):
        complete_from_semantic(labels, semantic[:10])


def test_segmenter_applies_the_models_fill_setting(monkeypatch, tmp_path) -> None:
    """No instance survives decoding here; the semantic mask's disks become the nuclei."""
    disks = [(30, 30, 9), (90, 80, 10)]
    image, _ = disk_image((128, 128), disks)
    sem = disk_labels((128, 128), disks) > 0
    model = create_model(tiny=True)
    th = dataclasses.replace(model.config.thresholds, fill_new_area=20)
    model.config = dataclasses.replace(model.config, thresholds=th, input_scale=1.0)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.thresholds.fill_new_area == 20 and not loaded.config.thresholds.fill_attach
    seen = {}

    def fake_decode(self, rgb, maps, det, sets, ext, expert, semantic, clock, up=(1.0, 1.0),
                    progress=None):
        seen["semantic"] = semantic
        return [], sem.copy()

    monkeypatch.setattr(Segmenter, "_decode", fake_decode)
    seg = Segmenter(loaded)
    res = seg.segment(image)
    assert seen["semantic"] is True  # the semantic pass runs for the fill
    assert res.semantic is None  # but is only returned when asked for
    assert len(np.unique(res.labels[res.labels > 0])) == 2
    assert res.scores == {}  # added nuclei have no SAM score
    clicked = seg.segment(image, expert=ExpertPrompts(np.array([[80.0, 90.0]]), np.array([0])))
    assert len(np.unique(clicked.labels[clicked.labels > 0])) == 1
    assert clicked.labels[90, 80] == 0
    no_fill = Segmenter(loaded, thresholds=loaded.config.thresholds.without_fill())
    assert no_fill.segment(image).labels.max() == 0  # what --no-fill does
    assert not seen["semantic"]


def test_segmenter_prompts_from_given_nuclei() -> None:
    disks = [(30, 30, 9), (90, 80, 10), (40, 100, 8)]
    image, truth = disk_image((128, 128), disks)
    model = create_model(tiny=True)
    model.config = dataclasses.replace(model.config, input_scale=0.5)
    res = Segmenter(model).segment(image, nuclei=truth)
    assert res.n_detected == 3  # one prompt set per given nucleus, at the model's scale
    assert res.labels.shape == truth.shape
    with pytest.raises(InputError, match="integer labels"):
        Segmenter(model).segment(image, nuclei=truth[:64])
    with pytest.raises(InputError, match="integer labels"):
        Segmenter(model).segment(image, nuclei=truth.astype(np.float32))


def test_segment_command_no_fill(tmp_path, monkeypatch) -> None:
    import imageio.v3 as iio

    from sac.cli import main

    image, _ = disk_image((96, 96), [(30, 30, 9), (60, 70, 10)])
    iio.imwrite(tmp_path / "im.png", image)
    model = create_model(tiny=True)
    th = dataclasses.replace(model.config.thresholds, fill_new_area=20, fill_attach=True)
    model.config = dataclasses.replace(model.config, input_scale=1.0, thresholds=th)
    save_model(model, tmp_path / "m")
    seen = []
    real = Segmenter.segment

    def spy(self, *args, **kwargs):
        seen.append((self.thresholds.fill_new_area, self.thresholds.fill_attach))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "segment", spy)
    base = ["segment", str(tmp_path / "im.png"), "--model", str(tmp_path / "m"), "--quiet"]
    assert main([*base, "-o", str(tmp_path / "a")]) == 0
    assert main([*base, "-o", str(tmp_path / "b"), "--no-fill"]) == 0
    assert seen == [(20, True), (0, False)]
    assert (tmp_path / "b" / "im_labels.tif").is_file()
