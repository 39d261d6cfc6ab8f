"""Nucleus-free training crops: synthetic tissue, the sparsest real crops, their share."""

from __future__ import annotations

import numpy as np
import pytest

from sac.core.errors import ConfigError
from sac.training.augment import AugmentConfig, random_crop
from sac.training.negatives import (
    KINDS,
    NegativeConfig,
    Palette,
    palette,
    stretched,
    synthetic_negative,
)
from sac.training.sampler import CropSampler, TrainImage

from synthetic import disk_labels

HE = Palette(np.array([0.95, 0.94, 0.96], np.float32), np.array([0.85, 0.45, 0.65], np.float32),
             bright=True)
DARK = Palette(np.array([0.02] * 3, np.float32), np.array([0.15] * 3, np.float32), bright=False)


@pytest.mark.parametrize("kind", KINDS)
def test_synthetic_negative_is_tissue_between_glass_and_tissue_colours(kind: str) -> None:
    a = synthetic_negative(128, HE, np.random.default_rng(3), kind)
    b = synthetic_negative(128, HE, np.random.default_rng(3), kind)
    assert a.shape == (128, 128, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # deterministic for one generator state
    assert a.min() >= 0.0 and a.max() <= 1.0
    # pink tissue on white glass: green is always the lowest channel, red the highest
    mean = a.reshape(-1, 3).mean(0)
    assert mean[1] < mean[2] < mean[0] + 0.02
    assert a.std() > 0.002  # a texture, not a flat colour
    dark = synthetic_negative(128, DARK, np.random.default_rng(3), kind)
    assert dark.mean() < 0.2  # a dark-field palette stays dark


def test_fat_is_mostly_empty_cells_and_fibre_is_anisotropic() -> None:
    from sac.training.negatives import fat, fibre

    rng = np.random.default_rng(0)
    cells = fat(256, rng)
    assert (cells < 0.1).mean() > 0.7  # thin membranes around empty cells
    f = fibre(256, np.random.default_rng(1))
    gy, gx = np.gradient(f)
    # streaks run one way: the gradient energy is not the same in every direction
    energies = [np.abs(gx * np.cos(a) + gy * np.sin(a)).mean() for a in np.linspace(0, np.pi, 8)]
    assert max(energies) > 1.5 * min(energies)


def test_unknown_kind_and_bad_shares_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown synthetic negative"):
        synthetic_negative(32, HE, np.random.default_rng(0), "bubbles")
    with pytest.raises(ConfigError, match="at most 1"):
        NegativeConfig(0.6, 0.6)
    with pytest.raises(ConfigError, match="must be in"):
        NegativeConfig(-0.1, 0.0)
    assert NegativeConfig(0.0, 0.0).off and not NegativeConfig().off


def test_palette_of_bright_and_dark_field_images() -> None:
    lab = disk_labels((64, 64), [(32, 32, 8)])
    bright = np.full((64, 64, 3), 0.9, np.float32)
    bright[:, :32] = 0.7  # stroma on the left, glass on the right
    bright[lab > 0] = 0.2  # a dark nucleus
    p = palette(bright, lab)
    assert p.bright and p.glass[0] == pytest.approx(0.9) and p.tissue[0] == pytest.approx(0.7)
    dark = 1.0 - bright
    q = palette(dark, lab)
    assert not q.bright and q.glass[0] == pytest.approx(0.1) and q.tissue[0] == pytest.approx(0.3)


def test_stretched_scales_real_pixels_only() -> None:
    rgb = np.full((8, 8, 3), 0.9, np.float32)
    rgb[0, 0] = 0.95
    valid = np.ones((8, 8), bool)
    valid[:, 6:] = False
    out = stretched(rgb, valid)
    assert out[0, 0, 0] == pytest.approx(1.0) and out[1, 1, 0] == pytest.approx(0.0)
    assert (out[:, 6:] == 0).all()


def test_random_crop_least_takes_the_emptiest_place() -> None:
    lab = np.zeros((200, 200), np.int32)
    lab[:, :100] = disk_labels((200, 100), [(y, x, 6) for y in range(10, 200, 16)
                                            for x in range(10, 100, 16)])
    img = np.zeros((200, 200, 3), np.float32)
    rng = np.random.default_rng(5)
    _, most, _ = random_crop(img, lab, 64, rng, min_foreground=0.3)
    _, least, _ = random_crop(img, lab, 64, np.random.default_rng(5), least=True, tries=10)
    assert (most > 0).mean() > (least > 0).mean()
    assert (least > 0).mean() < 0.1


def _sampler(negatives: NegativeConfig, augment: AugmentConfig | None = None) -> CropSampler:
    lab = disk_labels((160, 160), [(y, x, 7) for y in range(12, 160, 24)
                                   for x in range(12, 160, 24)])
    rgb = np.where(lab[..., None] > 0, 0.3, 0.85).astype(np.float32).repeat(3, 2)
    lab2 = lab.copy()
    lab2[:, 80:] = 0  # an image half without nuclei
    rgb2 = rgb.copy()
    rgb2[:, 80:] = 0.85
    images = [TrainImage("a", rgb, lab), TrainImage("b", rgb2, lab2)]
    return CropSampler(images, 64, augment or AugmentConfig.for_modality("he"),
                       negatives=negatives)


def test_sampler_draws_the_asked_share_of_empty_crops() -> None:
    crops = _sampler(NegativeConfig(0.0, 0.3)).batch(seed=0, step=0, batch_size=200)
    empty = np.mean([not c.labels.any() for c in crops])
    assert 0.2 <= empty <= 0.4  # synthetic crops carry no nucleus
    assert all(c.valid.all() and c.rgb.shape == (64, 64, 3) for c in crops)
    plain = _sampler(NegativeConfig(0.0, 0.0)).batch(seed=0, step=0, batch_size=200)
    sparse = _sampler(NegativeConfig(1.0, 0.0)).batch(seed=0, step=0, batch_size=200)
    fg = [np.mean([(c.labels > 0).mean() for c in cs]) for cs in (plain, sparse)]
    assert fg[1] < fg[0] / 2  # sparse crops hold far less foreground
    again = _sampler(NegativeConfig(0.0, 0.3)).batch(seed=0, step=0, batch_size=200)
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(crops, again, strict=True))


def test_hard_crops_hold_the_mined_false_detection() -> None:
    from sac.training.augment import crop_at

    plain = AugmentConfig(flips_rotations=False, intensity=False)  # pixels as they are
    sampler = _sampler(NegativeConfig(0.0, 0.0, hard=1.0), plain)
    marked = sampler.images[1].rgb.copy()
    marked[40, 130] = 1.0  # the one pure-white pixel: where the model invented a nucleus
    sampler.images[1].rgb = marked
    before = sampler.batch(seed=0, step=0, batch_size=20)  # nothing mined yet: sparse crops
    assert all(c.rgb.shape == (64, 64, 3) for c in before)
    sampler.set_hard([np.zeros((0, 2)), np.array([[40, 130]])])
    crops = sampler.batch(seed=0, step=1, batch_size=20)
    assert all((c.rgb >= 0.99).all(axis=2).any() for c in crops)  # every one holds it
    with pytest.raises(ValueError, match="the sampler has 2"):
        sampler.set_hard([np.zeros((0, 2))])
    img = np.zeros((100, 100, 3), np.float32)
    _, _, valid = crop_at(img, np.zeros((100, 100), np.int32), 64, np.array([99, 0]),
                          np.random.default_rng(0))
    assert valid.all()  # clipped inside the image


def test_false_detections_are_the_unlabelled_objects() -> None:
    from sac.model import create_model
    from sac.training.mining import false_detections

    from oracle import OracleGenerator

    lab = disk_labels((128, 128), [(30, 30, 8), (90, 90, 9), (30, 100, 8)])
    rgb = np.where(lab[..., None] > 0, 0.9, 0.1).astype(np.float32).repeat(3, 2)
    labelled = np.where(lab == 3, 0, lab)  # the third disk has no label: a false detection
    model = create_model(tiny=True)
    model.generator = OracleGenerator()
    got = false_detections(model, [TrainImage("a", rgb, labelled)])
    assert len(got) == 1 and got[0].shape == (1, 2)
    assert abs(got[0][0, 0] - 30) <= 2 and abs(got[0][0, 1] - 100) <= 2


def test_training_with_hard_negatives_keeps_them_for_a_resume(tmp_path) -> None:
    import torch

    from sac.cli import main

    from synthetic import write_disk_folder

    data = write_disk_folder(tmp_path / "d", n=3, size=96)
    run = tmp_path / "r"
    assert main(["train", "--data", str(data), "--format", "folder", "-o", str(run), "--tiny",
                 "--epochs", "2", "--steps-per-epoch", "2", "--quiet", "--no-tune",
                 "--no-size-head", "--hard-negatives", "0.3"]) == 0
    state = torch.load(run / "last" / "state.pt", weights_only=True)
    assert len(state["hard"]) == 3  # one entry per training image (mined, maybe empty)
    assert all(t.ndim == 2 and t.shape[1] == 2 for t in state["hard"])
