"""Nucleus detection from the generator's maps: centre-map peaks and hv-map falls."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from sac.core.errors import ConfigError
from sac.model import SACConfig, create_model
from sac.model.config import Thresholds
from sac.modeling.generator import GeneratorConfig, map_probabilities
from sac.pipeline.maps import Maps
from sac.pipeline.nuclei import detect, detect_from_falls, detect_nuclei
from sac.training.targets import generator_targets

from synthetic import disk_labels as disks


def exact_logits(target: np.ndarray) -> torch.Tensor:
    """Logits whose maps are (almost exactly) the given 4-channel hv targets."""
    t = torch.from_numpy(target)[None].clamp(-0.999, 0.999)
    return torch.cat([torch.logit(t[:, :2].clamp(1e-3, 1 - 1e-3)), torch.atanh(t[:, 2:])], 1)


def hv_maps(labels: np.ndarray, hole: tuple[int, int, int] | None = None) -> Maps:
    """The maps of a generator that predicts ``labels``' hv targets exactly; ``hole`` (y, x,
    r): a pale centre the foreground map misses there (vesicular nuclei in H&E)."""
    target = generator_targets(labels, centre="hv")
    if hole is not None:
        yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
        inside = (yy - hole[0]) ** 2 + (xx - hole[1]) ** 2 <= hole[2] ** 2
        target[0][inside] = 0.0
    probs = map_probabilities(exact_logits(target), hv=True)[0].numpy()
    return Maps.from_stack(probs)


def test_fall_map_is_high_only_where_nuclei_meet() -> None:
    labels = disks((64, 80), [(32, 25, 12), (32, 46, 12)])  # overlapping: one fg blob
    maps = hv_maps(labels)
    assert maps.fall is not None and maps.fall.shape == (64, 80)
    assert maps.fall.min() >= 0 and maps.fall.max() <= 1
    # inside each disk the offsets only rise (0 fall); at the contact h drops from +1 to -1
    assert maps.fall[32, 20:31].max() < 0.01 and maps.fall[32, 41:52].max() < 0.01
    assert maps.fall[32, 34:38].max() > 0.3
    assert maps.fall[5, 5] == 0  # background: the offsets are flat


def test_falls_split_touching_disks_and_keep_pale_centres_whole() -> None:
    truth = disks((96, 96), [(30, 25, 12), (30, 46, 12), (70, 60, 14)])
    maps = hv_maps(truth, hole=(70, 60, 5))
    found = detect_from_falls(maps.fg, maps.fall, fg_thresh=0.5, split=0.05)
    assert found.dtype == np.uint32 and found.max() == 3
    for y, x in ((30, 25), (30, 46), (70, 60)):  # the pale centre belongs to its nucleus
        assert found[y, x] > 0
    assert len({found[30, 25], found[30, 46], found[70, 60]}) == 3
    for k in range(1, 4):  # each found nucleus is one true disk, outline within a pixel
        true = np.bincount(truth[found == k]).argmax()
        iou = ((found == k) & (truth == true)).sum() / ((found == k) | (truth == true)).sum()
        assert iou > 0.85
    # the centre map's peaks break the pale-centred nucleus into pieces around its hole
    peaks = detect_nuclei(maps.fg, maps.centre, maps.boundary, 0.5, 3, 8, 0.3)
    assert len(np.unique(peaks[truth == 3])) > 2
    # no foreground: nothing; a tiny blob under min_area: dropped
    assert detect_from_falls(np.zeros((16, 16)), np.zeros((16, 16))).max() == 0
    speck = np.zeros((16, 16), np.float32)
    speck[5:7, 5:7] = 1
    assert detect_from_falls(speck, np.zeros((16, 16)), min_area=8).max() == 0


def test_hv_split_is_a_threshold_of_hv_models_only() -> None:
    maps = hv_maps(disks((48, 48), [(24, 24, 10)]))
    th = Thresholds(hv_split=0.05)
    assert detect(maps, th).max() == 1
    with pytest.raises(ConfigError, match="horizontal/vertical"):
        detect(dataclasses.replace(maps, fall=None), th)
    with pytest.raises(ConfigError, match="hv_split"):
        Thresholds(hv_split=-0.1)
    cfg = create_model(tiny=True).config
    with pytest.raises(ConfigError, match="centre_target 'hv'"):
        dataclasses.replace(cfg, thresholds=th)
    hv = dataclasses.replace(cfg, centre_target="hv", thresholds=th)
    assert SACConfig.from_dict(hv.to_dict()).thresholds.hv_split == 0.05
    old = hv.to_dict()  # configs written before hv_split existed still load, with 0
    del old["thresholds"]["hv_split"]
    assert SACConfig.from_dict(old).thresholds.hv_split == 0.0


class FixedHvGenerator(nn.Module):
    """Returns fixed hv logits (one image's exact targets), padded to the input's size."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.config = GeneratorConfig(hv=True)
        self.register_buffer("logits", logits)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full((x.shape[0], 4, *x.shape[-2:]), -10.0)
        out[:, 2:] = 0.0
        h, w = self.logits.shape[-2:]
        out[:, :, :h, :w] = self.logits
        return out


def test_tuning_chooses_fall_seeds_when_they_detect_better() -> None:
    from sac.training.sampler import TrainImage
    from sac.training.tune import HV_SPLIT, apply_tuning, summary, tune_detection

    truth = disks((96, 96), [(30, 25, 12), (30, 46, 12), (70, 60, 14)])
    target = generator_targets(truth, centre="hv")
    yy, xx = np.mgrid[:96, :96]
    target[0][(yy - 70) ** 2 + (xx - 60) ** 2 <= 25] = 0.0  # a pale centre
    model = create_model(tiny=True)
    model.generator = FixedHvGenerator(exact_logits(target))
    model.config = dataclasses.replace(model.config, centre_target="hv")
    image = TrainImage("a", np.zeros((96, 96, 3), np.float32), truth.astype(np.uint32))
    res = tune_detection(model, [image])
    assert len(res.table) == 3 * 5 * 3 + 3 * len(HV_SPLIT)  # peaks grid + fg x hv_split
    assert res.default_score < 1.0 and res.score == 1.0 and res.hv_split in HV_SPLIT
    apply_tuning(model, res)
    assert model.config.thresholds.hv_split == res.hv_split
    assert summary(res, "f1_obj")["hv_split"] == res.hv_split
