"""Generator maps with test-time augmentation: averaged views are exactly equivariant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sac.core.errors import ConfigError
from sac.model import create_model
from sac.modeling.generator import GeneratorConfig, PromptGenerator, map_probabilities
from sac.pipeline.maps import averaged_probs, generator_maps
from sac.pipeline.segmenter import Segmenter


@pytest.fixture(scope="module", params=[False, True], ids=["centre", "hv"])
def generator(request) -> PromptGenerator:
    """A random generator with a centre-map head, or with horizontal/vertical maps (whose
    signs flips change and whose order transposes swap)."""
    torch.manual_seed(0)
    return PromptGenerator(GeneratorConfig(hv=request.param)).eval()


def _maps(gen: PromptGenerator, rgb: np.ndarray, tta: int) -> np.ndarray:
    m = generator_maps(gen, rgb, 512, torch.device("cpu"), tta=tta)
    return np.stack([m.fg, m.boundary, m.centre])


def test_tta_maps_follow_flips_and_transposes(generator) -> None:
    """A random network is not symmetric, but its maps averaged over the views are: the maps
    of a flipped (and, with 8 views, transposed) image are the flipped maps."""
    rng = np.random.default_rng(0)
    rgb = rng.random((64, 64, 3), dtype=np.float32)  # a multiple of the stride: no padding
    plain = _maps(generator, rgb, 1)
    assert not np.allclose(_maps(generator, rgb[:, ::-1], 1), plain[:, :, ::-1], atol=1e-3)
    for tta in (2, 4, 8):
        ref = _maps(generator, rgb, tta)
        flipped = _maps(generator, np.ascontiguousarray(rgb[:, ::-1]), tta)
        np.testing.assert_allclose(flipped, ref[:, :, ::-1], atol=1e-5)
    ref = _maps(generator, rgb, 8)
    upside = _maps(generator, np.ascontiguousarray(rgb[::-1]), 8)
    np.testing.assert_allclose(upside, ref[:, ::-1], atol=1e-5)
    moved = _maps(generator, np.ascontiguousarray(rgb.transpose(1, 0, 2)), 8)
    np.testing.assert_allclose(moved, ref.transpose(0, 2, 1), atol=1e-5)


def test_tta_is_the_mean_of_the_views(generator) -> None:
    x = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        hv = generator.config.hv
        views = [map_probabilities(generator(x), hv)[0],
                 map_probabilities(generator(x.flip(-1)), hv)[0].flip(-1)]
        np.testing.assert_allclose(averaged_probs(generator, x, 2).numpy(),
                                   ((views[0] + views[1]) / 2).numpy(), atol=1e-5)
        np.testing.assert_allclose(averaged_probs(generator, x, 1).numpy(),
                                   views[0].numpy(), atol=1e-6)


def test_tta_choices_are_checked() -> None:
    with pytest.raises(ConfigError, match="tta must be one of"):
        Segmenter(create_model(tiny=True), tta=3)
    seg = Segmenter(create_model(tiny=True), tta=4)
    assert seg.config_dict()["tta"] == 4
    res = seg.segment(np.zeros((48, 48, 3), np.uint8))
    assert res.n_nuclei == 0


@pytest.mark.weights
@pytest.mark.parametrize(("kind", "rows"), [("blobs", 12), ("blobs", 20), ("dark disks", 20)])
def test_a_thin_image_of_cut_nuclei_keeps_them(kind: str, rows: int) -> None:
    """An image only 12-20 px high (too short to be folded) whose nuclei touch its long edges:
    the generator sees it padded out to 64 px. Mirrored plainly, the nuclei chained with their
    mirror images and ``sac-lite-dsb2018`` kept 16 of 26 blobs (12 px), 20 of 26 (20 px) and 1
    of 19 dark disks; the mirror now fades into the image's median (``pad_faded``)."""
    from sac.metrics import evaluate_pair
    from sac.model import load_model

    from synthetic import blob_strip, disk_strip

    image, truth = blob_strip(rows, 600) if kind == "blobs" else disk_strip(rows, 600, dark=True)
    res = Segmenter(load_model("sac-lite-dsb2018"), precision="bf16").segment(image)
    assert "folded" not in (res.size.note or "")
    assert evaluate_pair(truth, res.labels)["f1_obj"] >= 0.95
