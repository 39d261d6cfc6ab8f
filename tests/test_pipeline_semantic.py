"""The paper's semantic mask, decoded on windows of one encoder pass however large the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sac.model import PromptConfig, create_model, load_model
from sac.pipeline.decode import semantic_mask
from sac.pipeline.maps import Maps
from sac.pipeline.prompt_sets import semantic_set
from sac.pipeline.segmenter import Segmenter

from oracle import OracleGenerator
from synthetic import disk_image

# disks over a 520-px image, several across the seams of 256-px tiles overlapping by 64
WIDE_DISKS = [(60, 60, 14), (100, 200, 13), (190, 250, 15), (260, 130, 12), (300, 330, 14),
              (400, 420, 13), (450, 90, 15), (380, 250, 12), (128, 450, 14), (480, 480, 11)]


@pytest.fixture(scope="module")
def point_model(lite_medsam):
    """Real LiteMedSAM prompted with points, with the brightness-based stand-in generator."""
    model = create_model(prompts=PromptConfig(mode="points"))
    model.generator = OracleGenerator()
    return model


def _truth_maps(labels: np.ndarray) -> Maps:
    fg = (labels > 0).astype(np.float32)
    return Maps(fg, np.zeros_like(fg), fg.copy())


@pytest.mark.weights
def test_a_model_sized_tile_gives_the_whole_embedding_decode(point_model) -> None:
    image, truth = disk_image((256, 256))
    seg = Segmenter(point_model)
    rgb = image.astype(np.float32) / 255
    seg.predictor.set_image(rgb, normalized=True, upscale=False)
    maps, cfg, th = _truth_maps(truth), point_model.config.prompts, seg.thresholds
    region = (slice(0, 256), slice(0, 256))
    windowed = semantic_mask(seg.predictor, truth, maps, region, 256, 64, cfg, th)
    s = semantic_set(truth, maps, cfg, th)
    whole = seg.predictor.predict(points=s.points[None], labels=s.labels[None]).masks[0, 0]
    assert windowed.any()
    np.testing.assert_array_equal(windowed, whole & (truth > 0))  # kept where nuclei are


def test_the_semantic_mask_stays_where_the_generator_sees_nuclei(monkeypatch) -> None:
    """SAM's semantic output beyond the generator's foreground (and the detected nuclei) is
    dropped: the completion then cannot grow nuclei into what the generator calls
    background."""
    from types import SimpleNamespace

    from sac.core.labels import InstanceMask

    shape = (64, 64)
    det = np.zeros(shape, np.uint32)
    det[10:20, 10:20] = 1
    fg = np.zeros(shape, np.float32)
    fg[30:40, 30:40] = 0.9  # nucleus-like to the generator, not detected
    fg[50:60, 50:60] = 0.2  # faint: below the threshold
    maps = Maps(fg, np.zeros(shape, np.float32), fg.copy())
    everything = InstanceMask(0, 0, np.ones(shape, bool), 1.0)
    predictor = SimpleNamespace(native_grid=64,
                                predict_instances=lambda **kw: [everything])
    th = SimpleNamespace(fg=0.5, min_distance=4)
    monkeypatch.setattr("sac.pipeline.decode.semantic_set", lambda *a: SimpleNamespace(
        points=np.array([[15.0, 15.0]], np.float32), labels=np.array([1])))
    out = semantic_mask(predictor, det, maps, (slice(0, 64), slice(0, 64)), 64, 16,
                        PromptConfig(), th)
    want = (det > 0) | (fg >= 0.5)
    np.testing.assert_array_equal(out, want)


def test_a_large_image_is_encoded_once_and_agrees_with_model_sized_tiles() -> None:
    """The shipped fluorescence model completes its nuclei from the semantic mask, which once
    meant model-sized tiles (nine encoder passes here); the base weights' semantic output is
    not trained to be meaningful, so this needs a trained model."""
    image, truth = disk_image((520, 520), WIDE_DISKS)
    model = load_model("sac-lite-dsb2018")
    assert model.config.thresholds.fills
    seg = Segmenter(model)
    passes = []
    encoder = seg.predictor.encoder

    class Counting:
        multiple = encoder.multiple

        def __call__(self, pixels: torch.Tensor, bf16: bool) -> torch.Tensor:
            passes.append(tuple(pixels.shape[-2:]))
            return encoder(pixels, bf16)

    seg.predictor.encoder = Counting()
    filled = seg.segment(image, scale=1.0)  # the completion decodes the semantic mask too
    assert filled.semantic is None and passes == [(528, 528)]  # padded to the encoder's step
    passes.clear()
    big = seg.segment(image, scale=1.0, semantic=True)
    assert passes == [(528, 528)]
    small = Segmenter(model, tile_size=256).segment(image, scale=1.0, semantic=True)
    assert big.semantic is not None and small.semantic is not None
    assert big.semantic.shape == truth.shape

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return float((a & b).sum() / (a | b).sum())

    assert iou(big.semantic, truth > 0) >= 0.95
    assert iou(big.semantic, small.semantic) >= 0.98
    assert big.n_nuclei == small.n_nuclei == len(WIDE_DISKS)
