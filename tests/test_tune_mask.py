"""Post-processing settings tuned on validation images (SAM's mask logit threshold), and the
embedding cache that makes tuning them cheap."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from sac.core.errors import ConfigError
from sac.metrics import aggregate, evaluate_pair
from sac.model import create_model, load_model, save_model
from sac.model.config import Thresholds
from sac.pipeline.segmenter import Segmenter
from sac.sam.predictor import EmbeddingCache
from sac.training.sampler import TrainImage
from sac.training.tune import SETTINGS, criterion, tune_setting

from oracle import OracleGenerator
from synthetic import disk_image, grid_disks


def test_new_thresholds_in_config(tmp_path: Path) -> None:
    """Configs written before the mask logit and foreground cuts existed load with them off
    (0); values outside their range are refused with the key named."""
    folder = save_model(create_model(tiny=True), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["thresholds"]["mask_logit"] == 0.0
    del cfg["thresholds"]["mask_logit"], cfg["thresholds"]["min_fg"]
    (folder / "config.json").write_text(json.dumps(cfg))
    th = load_model(folder).config.thresholds
    assert (th.mask_logit, th.min_fg) == (0.0, 0.0)
    for key, bad in (("mask_logit", 9.0), ("min_fg", 1.5)):
        (folder / "config.json").write_text(json.dumps({**cfg, "thresholds": {
            **cfg["thresholds"], key: bad}}))
        with pytest.raises(ConfigError, match=key):
            load_model(folder)
    assert Thresholds(mask_logit=-2.5).mask_logit == -2.5


def _annotated(style: int, n: int = 2) -> list[TrainImage]:
    """Synthetic fluorescence images whose labels sit ``style`` px outside (> 0) or inside
    (< 0) the disks' edges, as annotators who trace generously or tightly would."""
    out = []
    for seed in range(n):
        rgb, labels = grid_disks(9, n_side=3, seed=seed)
        size = 2 * abs(style) + 1
        if style > 0:  # background next to a nucleus joins it
            labels = np.where(labels > 0, labels, ndi.grey_dilation(labels, size=size))
        elif style < 0:  # the rim of each nucleus becomes background
            labels = np.where(ndi.grey_erosion(labels, size=size) == labels, labels, 0)
        out.append(TrainImage(f"im{seed}", rgb.astype(np.float32) / 255, labels))
    return out


@pytest.mark.weights
def test_tuned_threshold_follows_the_annotation_style() -> None:
    """Against tight labels the tuner cuts SAM's masks higher than against generous ones,
    and each table row is what the pipeline scores with that threshold."""
    model = load_model("sac-lite-dsb2018")
    cache = EmbeddingCache()
    grid = SETTINGS["mask_logit"]
    tight = tune_setting(model, _annotated(-2), "mask_logit", grid, embeddings=cache)
    loose = tune_setting(model, _annotated(2), "mask_logit", grid, embeddings=cache)
    assert tight.value > loose.value
    assert [r["mask_logit"] for r in tight.table] == sorted({*grid, 0.0})
    assert cache.hits > 0  # the same images' tiles were encoded once
    for result in (tight, loose):
        assert result.score > result.default_score  # a real gain, or the cut would stay 0
    th = dataclasses.replace(model.config.thresholds.without_fill(),
                             mask_logit=tight.value)
    seg = Segmenter(model, thresholds=th)
    images = _annotated(-2)
    rows = [evaluate_pair(im.labels, seg.segment(im.rgb, im.name, scale=1.0).labels)
            for im in images]
    agg = aggregate(rows)
    assert tight.score == pytest.approx(float(agg["pixel_dice"] + agg["aji"]))


@pytest.mark.weights
def test_seed_spacing_refined_on_the_whole_pipeline() -> None:
    """Seeds spaced wider than touching nuclei (pairs 22 px apart) prompt one nucleus of a
    pair; the whole-pipeline refinement moves the spacing back, keeps it an integer, and
    scores each value as the pipeline does."""
    model = load_model("sac-lite-dsb2018")
    wide = dataclasses.replace(model.config.thresholds, min_distance=40)
    model.config = dataclasses.replace(model.config, thresholds=wide)
    pairs = [(cy, cx + dx, 11) for cy in (50, 130, 210) for cx in (50, 160) for dx in (0, 22)]
    images = []
    for seed in range(2):
        rgb, labels = disk_image(disks=pairs, seed=seed)
        images.append(TrainImage(f"im{seed}", rgb.astype(np.float32) / 255, labels))
    res = tune_setting(model, images, "min_distance", (3,), embeddings=EmbeddingCache())
    assert res.value == 3 and isinstance(res.value, int)
    assert [r["min_distance"] for r in res.table] == [3, 40]
    close, far = res.table
    assert close["f1_obj"] > far["f1_obj"] + 0.2  # the second nucleus of each pair is back
    seg = Segmenter(model, thresholds=dataclasses.replace(wide.without_fill(), min_distance=3))
    agg = aggregate([evaluate_pair(im.labels, seg.segment(im.rgb, im.name, scale=1.0).labels)
                     for im in images])
    assert res.score == pytest.approx(float(agg["pixel_dice"] + agg["aji"]))


def test_embedding_cache_gives_the_same_labels() -> None:
    """Segmenting through a shared cache returns exactly what a fresh segmenter does, runs
    the encoder once per distinct tile, and never serves one model's embedding to another."""
    torch.manual_seed(0)
    model, other = (create_model(tiny=True, input_scale=1.0,
                                 thresholds=Thresholds(min_score=0.0)).eval() for _ in "ab")
    model.generator = other.generator = OracleGenerator()  # finds the disks: tiles to encode
    rgb, _ = grid_disks(9, n_side=3)
    plain = Segmenter(model).segment(rgb).labels
    cache = EmbeddingCache()
    first = Segmenter(model, embeddings=cache).segment(rgb).labels
    n = len(cache)
    again = Segmenter(model, embeddings=cache).segment(rgb).labels
    assert n > 0 and cache.hits == n and len(cache) == n
    assert np.array_equal(plain, first) and np.array_equal(plain, again)
    Segmenter(other, embeddings=cache).segment(rgb)
    assert len(cache) == 2 * n and cache.hits == n
    small = EmbeddingCache(max_bytes=1)  # too small to hold one: nothing kept, still right
    assert np.array_equal(plain, Segmenter(model, embeddings=small).segment(rgb).labels)
    assert len(small) == 0


def test_foreground_cut_spares_prompts_a_person_gave() -> None:
    """With the cut at its maximum every automatic mask goes (none lies wholly on foreground
    of probability 1), but nuclei prompted by clicks or given labels stay."""
    from sac.pipeline.expert import ExpertPrompts

    torch.manual_seed(0)
    model = create_model(tiny=True, input_scale=1.0, thresholds=Thresholds(min_score=0.0))
    model.generator = OracleGenerator()
    rgb, truth = grid_disks(9, n_side=3)
    kept = Segmenter(model.eval()).segment(rgb)
    assert kept.n_nuclei > 0
    strict = dataclasses.replace(model.config.thresholds, min_fg=1.0)
    seg = Segmenter(model, thresholds=strict)
    assert seg.segment(rgb).n_nuclei == 0
    assert seg.segment(rgb, nuclei=truth).n_nuclei > 0
    clicks = ExpertPrompts(np.array([[14.0, 14.0]], np.float32), np.array([1]))
    assert seg.segment(rgb, expert=clicks).n_nuclei > 0


def test_criterion() -> None:
    agg = {"pixel_dice": 0.9, "aji": 0.7, "pq": 0.6, "f1_obj": 0.8, "dsb_score": 0.5}
    assert criterion(agg, "dsb_score") == pytest.approx(1.4)
    with pytest.raises(ValueError, match="tuning target"):
        criterion(agg, "iou")
