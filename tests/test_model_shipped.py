"""The trained models shipped in the package: load by name, match the installed base weights,
and segment simple synthetic images correctly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from sac.model import load_model, shipped_models
from sac.pipeline.segmenter import load_segmenter
from sac.sam.weights import LITEMEDSAM_SHA256, find_litemedsam, sha256_of

SHIPPED = ("sac-lite-monuseg", "sac-lite-dsb2018", "sac-lite-nuclei")
DISKS = [(40, 40, 9), (40, 110, 10), (100, 60, 8), (110, 130, 11), (160, 40, 9), (170, 150, 10)]

pytestmark = pytest.mark.weights


def disks_image(fg: tuple[float, ...], bg: tuple[float, ...], size: int = 200,
                seed: int = 0) -> tuple[np.ndarray, int]:
    """RGB uint8 disks of colour ``fg`` on ``bg`` with mild noise and blur."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), bool)
    for cy, cx, r in DISKS:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img = np.where(mask[..., None], np.array(fg), np.array(bg))
    img = ndi.gaussian_filter(img, (1, 1, 0)) + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), len(DISKS)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_by_name(name: str) -> None:
    assert name in shipped_models()
    model = load_model(name)
    card = (shipped_models()[name] / "MODEL_CARD.md").read_text()
    assert model.config.base.sha256 == LITEMEDSAM_SHA256 == sha256_of(find_litemedsam())
    assert LITEMEDSAM_SHA256 in card
    size = sum(p.stat().st_size for p in shipped_models()[name].iterdir())
    assert size < 15e6


def test_dsb_model_counts_bright_disks() -> None:
    image, n = disks_image((0.8, 0.8, 0.8), (0.05, 0.05, 0.05))
    res = load_segmenter("sac-lite-dsb2018").segment(image)
    assert res.n_nuclei == n


def test_monuseg_model_counts_hematoxylin_disks() -> None:
    # dark purple nuclei on pink, at the model's (40x) scale: disks of 16-22 px diameter
    image, n = disks_image((0.35, 0.2, 0.55), (0.93, 0.75, 0.85))
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    res = load_segmenter("sac-lite-monuseg").segment(big)
    assert res.n_nuclei == n


def test_generalist_counts_bright_and_hematoxylin_disks() -> None:
    """One model for both kinds of image: bright nuclei on dark and H&E-like ones."""
    seg = load_segmenter("sac-lite-nuclei")
    for fg, bg in (((0.8, 0.8, 0.8), (0.05, 0.05, 0.05)),
                   ((0.35, 0.2, 0.55), (0.93, 0.75, 0.85))):
        image, n = disks_image(fg, bg)
        big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
        assert seg.segment(big).n_nuclei == n
