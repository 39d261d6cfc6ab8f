"""Training augmentation: crops with padding, dihedral geometry, intensity and stain jitter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sac.training.augment import (
    AugmentConfig,
    add_noise,
    augment,
    dihedral,
    gaussian_blur,
    intensity_jitter,
    random_crop,
    random_dihedral,
    stain_jitter,
)

from synthetic import disk_image, disk_labels

DISKS = [(20, 25, 9), (30, 70, 12), (70, 40, 10), (75, 85, 8)]  # (cy, cx, r)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def coord_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """float32 (H, W, 3): channel 0 encodes the row, channel 1 the column, channel 2 is noise."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    noise = rng(seed).random((h, w), dtype=np.float32)
    return np.stack([yy / 1024, xx / 1024, noise], axis=-1)


def origin(crop: np.ndarray) -> tuple[int, int]:
    """Source (row, column) of a coordinate-image crop's top-left pixel."""
    return round(float(crop[0, 0, 0]) * 1024), round(float(crop[0, 0, 1]) * 1024)


def he_like(shape: tuple[int, int] = (96, 96), seed: int = 0) -> np.ndarray:
    """Synthetic H&E: hematoxylin-rich disks on eosin-stained tissue with white gaps.

    Built with hed2rgb from non-negative stain concentrations, i.e. inside the stain cone like
    real, well-stained H&E.
    """
    from scipy import ndimage as ndi
    from skimage.color import hed2rgb

    g = rng(seed)
    h, w = shape
    hed = np.zeros((h, w, 3))
    tissue = ndi.gaussian_filter(g.random(shape), 4) > 0.45
    hed[..., 1] = tissue * (0.02 + 0.01 * g.random(shape))
    hed[..., 0] = 0.003 * g.random(shape) + 0.06 * (disk_labels(shape, DISKS) > 0)
    return hed2rgb(hed).astype(np.float32)


# --------------------------------------------------------------------------- random_crop


def test_crop_matches_source_region() -> None:
    image, labels = coord_image(100, 120), disk_labels((100, 120), DISKS)
    for seed in range(5):
        crop, lab, valid = random_crop(image, labels, 48, rng(seed))
        assert crop.shape == (48, 48, 3) and crop.dtype == np.float32
        assert lab.shape == (48, 48) and lab.dtype == labels.dtype and valid.all()
        y, x = origin(crop)
        np.testing.assert_array_equal(crop, image[y:y + 48, x:x + 48])
        np.testing.assert_array_equal(lab, labels[y:y + 48, x:x + 48])
        assert not np.shares_memory(crop, image) and not np.shares_memory(lab, labels)


def test_crop_pads_short_sides_and_marks_valid() -> None:
    image, labels = coord_image(40, 90), disk_labels((40, 90), [(20, 45, 15)])
    image += 0.01  # no real pixel is exactly 0, so padding is recognisable
    crop, lab, valid = random_crop(image, labels, 64, rng(3))
    assert crop.shape == (64, 64, 3) and lab.shape == valid.shape == (64, 64)
    assert valid[:40].all() and not valid[40:].any()
    assert (crop[40:] == 0).all() and (lab[40:] == 0).all()
    y, x = origin(crop - 0.01)
    assert y == 0
    np.testing.assert_array_equal(crop[:40], image[:, x:x + 64])
    np.testing.assert_array_equal(lab[:40], labels[:, x:x + 64])

    small, small_lab = coord_image(30, 20), disk_labels((30, 20), [(15, 10, 6)])
    crop, lab, valid = random_crop(small, small_lab, 32, rng(0))
    assert valid.sum() == 30 * 20 and valid[:30, :20].all()
    np.testing.assert_array_equal(crop[:30, :20], small)
    np.testing.assert_array_equal(lab[:30, :20], small_lab)
    assert (crop[~valid] == 0).all() and (lab[~valid] == 0).all()


def test_crop_min_foreground() -> None:
    image = coord_image(100, 100)
    labels = np.zeros((100, 100), np.int32)
    labels[:, :50] = 1  # a crop of 50 at column x has foreground fraction (50 - x) / 50
    for seed in range(10):
        _, lab, _ = random_crop(image, labels, 50, rng(seed), min_foreground=0.5, tries=40)
        assert (lab > 0).mean() >= 0.5
    # Impossible target: the best of the tries, never worse than the first try alone.
    for seed in range(10):
        _, first, _ = random_crop(image, labels, 50, rng(seed))
        _, best, _ = random_crop(image, labels, 50, rng(seed), min_foreground=1.0)
        assert (best > 0).mean() >= (first > 0).mean()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0}, "size must be a positive integer"),
        ({"size": -4}, "size must be a positive integer"),
        ({"size": 8.0}, "size must be a positive integer"),
        ({"tries": 0}, "tries must be an integer"),
        ({"min_foreground": 1.5}, "min_foreground must be in"),
    ],
)
def test_crop_rejects_bad_options(kwargs: dict, message: str) -> None:
    args = {"size": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        random_crop(coord_image(16, 16), np.zeros((16, 16), np.int32), rng=rng(), **args)


@pytest.mark.parametrize(
    ("image", "labels", "message"),
    [
        (np.zeros((16, 16), np.float32), np.zeros((16, 16), np.int32), "image must be 3-D"),
        (np.zeros((16, 16, 3), np.float32), np.zeros((16, 16, 1), np.int32), "labels must be 2-D"),
        (np.zeros((16, 16, 3), np.float32), np.zeros((16, 15), np.int32), "differ in size"),
        (np.zeros((16, 16, 3), np.float32), np.zeros((16, 16), np.float32), "integer instance"),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), np.int32), "must be float"),
    ],
)
def test_bad_pairs_raise(image: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        random_crop(image, labels, 8, rng())
    if "float" not in message:
        with pytest.raises(ValueError, match=message):
            augment(image, labels, None, AugmentConfig(), rng())


# --------------------------------------------------------------------------- dihedral


def id_pair(h: int = 6, w: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels with a unique id per pixel, an image encoding that id, and a valid mask."""
    labels = np.arange(1, h * w + 1, dtype=np.int32).reshape(h, w)
    image = np.stack([labels, -labels, labels * 2], axis=-1).astype(np.float32)
    valid = np.zeros((h, w), bool)
    valid[: h // 2, : w // 3] = True
    return image, labels, valid


def test_dihedral_group_properties() -> None:
    image, labels, valid = id_pair()
    out = (image, labels, valid)
    for _ in range(4):
        out = dihedral(*out[:2], 1, False, out[2])
    for a, b in zip(out, (image, labels, valid), strict=True):
        np.testing.assert_array_equal(a, b)
    flipped = dihedral(image, labels, 0, True, valid)
    twice = dihedral(flipped[0], flipped[1], 0, True, flipped[2])
    for a, b in zip(twice, (image, labels, valid), strict=True):
        np.testing.assert_array_equal(a, b)
    turned = dihedral(image, labels, 3, True)  # rotate, then flip: undoing the flip leaves k=3
    np.testing.assert_array_equal(dihedral(turned[0], turned[1], 0, True)[0], np.rot90(image, 3))
    np.testing.assert_array_equal(dihedral(image, labels, 5, False)[1],
                                  dihedral(image, labels, 1, False)[1])
    np.testing.assert_array_equal(dihedral(image, labels, 1, False)[1], np.rot90(labels))
    np.testing.assert_array_equal(dihedral(image, labels, 0, True)[1], labels[:, ::-1])
    seen = {dihedral(image, labels, k, f)[1].tobytes() for k in range(4) for f in (False, True)}
    assert len(seen) == 8  # all eight transforms differ on an asymmetric image


def test_dihedral_moves_labels_with_pixels() -> None:
    image, labels, valid = id_pair()
    for k in range(4):
        for flip in (False, True):
            img, lab, val = dihedral(image, labels, k, flip, valid)
            assert img.shape[:2] == lab.shape == val.shape == np.rot90(labels, k).shape
            np.testing.assert_array_equal(img[..., 0], lab)  # pixel-for-pixel
            np.testing.assert_array_equal(img[..., 2], 2 * lab)
            assert set(lab[val].tolist()) == set(labels[valid].tolist())
            for a, src in ((img, image), (lab, labels), (val, valid)):
                assert a.flags.c_contiguous and not np.shares_memory(a, src)
    assert dihedral(image, labels, 1, True)[2] is None


def test_random_dihedral_covers_the_group() -> None:
    image, labels, _ = id_pair()
    seen = {random_dihedral(image, labels, rng(s))[1].tobytes() for s in range(48)}
    assert len(seen) == 8


def test_dihedral_rejects_bad_input() -> None:
    image, labels, valid = id_pair()
    with pytest.raises(ValueError, match="k must be an integer"):
        dihedral(image, labels, 1.5, False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ in size"):
        dihedral(image, labels[:, :-1], 1, False)
    with pytest.raises(ValueError, match="valid and image differ"):
        dihedral(image, labels, 1, False, valid[:-1])
    with pytest.raises(ValueError, match="valid must be a bool"):
        dihedral(image, labels, 1, False, valid.astype(np.uint8))


# --------------------------------------------------------------------------- colour


def test_intensity_jitter_range_dtype_determinism() -> None:
    image = rng(1).random((32, 32, 3), dtype=np.float32)
    outs = [intensity_jitter(image, rng(s), 0.5, 0.9, 1.0) for s in (7, 7, 8)]
    for out in outs:
        assert out.dtype == np.float32 and out.shape == image.shape
        assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    same = intensity_jitter(image, rng(0), 0.0, 0.0, 0.0)
    np.testing.assert_allclose(same, image, atol=1e-6)
    gray = np.repeat(image[..., :1], 3, axis=2)
    out = intensity_jitter(gray, rng(3))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    with pytest.raises(ValueError, match="contrast must be in"):
        intensity_jitter(image, rng(), contrast=1.0)
    with pytest.raises(ValueError, match="image must be 3-D"):
        intensity_jitter(image[..., 0], rng())


def test_stain_jitter_zero_strength_is_identity() -> None:
    # Tolerance: the only error is float32 rounding of log, a 3x3 product equal to the identity
    # up to ~1e-16, and exp: a few ulp of |log x| <= 13.8 in relative terms, i.e. < 1e-5 on [0, 1].
    image = he_like()
    out = stain_jitter(image, rng(), sigma=0.0, bias=0.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, image, atol=1e-5)
    # Also off the stain cone (saturated colours), where skimage's clipped rgb2hed -> hed2rgb
    # round trip is lossy; stain_jitter does not clip concentrations, so it stays the identity.
    from skimage.color import hed2rgb, rgb2hed

    colours = rng(2).random((24, 24, 3), dtype=np.float32)
    np.testing.assert_allclose(stain_jitter(colours, rng(), 0.0, 0.0), colours, atol=1e-5)
    assert np.abs(hed2rgb(rgb2hed(colours)) - colours).max() > 0.01


def test_stain_jitter_matches_skimage_and_changes_image() -> None:
    from skimage.color import hed2rgb, rgb2hed

    image = he_like()
    out = stain_jitter(image, rng(5), sigma=0.1, bias=0.02)
    g = rng(5)  # same draws as stain_jitter: 3 factors, then 3 biases
    alpha, beta = g.uniform(0.9, 1.1, 3), g.uniform(-0.02, 0.02, 3)
    expected = hed2rgb(rgb2hed(image) * alpha + beta)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - image).mean() > 1e-3
    np.testing.assert_array_equal(out, stain_jitter(image, rng(5), sigma=0.1, bias=0.02))
    with pytest.raises(ValueError, match="3 channels"):
        stain_jitter(image[..., :2], rng())
    with pytest.raises(ValueError, match="sigma must be in"):
        stain_jitter(image, rng(), sigma=-0.1)


def test_blur_respects_padding_and_noise_keeps_gray() -> None:
    image = np.full((20, 20, 3), 0.5, np.float32)
    valid = np.zeros((20, 20), bool)
    valid[:12, :15] = True
    image[~valid] = 0
    out = gaussian_blur(image, 1.5, valid)
    np.testing.assert_allclose(out[valid], 0.5, atol=1e-5)  # padding does not darken the edge
    gray = np.repeat(rng(0).random((16, 16, 1), dtype=np.float32), 3, axis=2)
    noisy = add_noise(gray, 0.1, rng(1))
    assert np.array_equal(noisy[..., 0], noisy[..., 2]) and not np.array_equal(noisy, gray)
    base = he_like((16, 16))
    colour = add_noise(base, 0.1, rng(1))
    noise = colour - base
    assert not np.array_equal(noise[..., 0], noise[..., 2])  # independent per channel
    assert colour.min() >= 0 and colour.max() <= 1


# --------------------------------------------------------------------------- pipeline


def test_config_for_modality() -> None:
    assert AugmentConfig.for_modality("he").stain
    assert AugmentConfig.for_modality("Histology").stain
    assert not AugmentConfig.for_modality("fluorescence").stain
    assert not AugmentConfig.for_modality("any").stain
    cfg = AugmentConfig.for_modality("he", blur_prob=0.5, stain_bias=0.01)
    assert cfg.blur_prob == 0.5 and cfg.stain_bias == 0.01 and cfg.flips_rotations
    with pytest.raises(ValueError, match="unknown modality"):
        AugmentConfig.for_modality("xray")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.stain = False  # type: ignore[misc]
    with pytest.raises(ValueError, match="blur_prob must be in"):
        AugmentConfig(blur_prob=1.5)
    with pytest.raises(ValueError, match="blur_sigma"):
        AugmentConfig(blur_sigma=(1.0, 0.5))


def test_geometry_only_keeps_exact_ids() -> None:
    image, labels = he_like(), disk_labels((96, 96), DISKS).astype(np.uint16)
    cfg = AugmentConfig(intensity=False)
    before = image.copy(), labels.copy()
    transforms = {dihedral(image, labels, k, f)[1].tobytes(): (k, f)
                  for k in range(4) for f in (False, True)}
    assert len(transforms) == 8
    for seed in range(6):
        img, lab, valid = augment(image, labels, None, cfg, rng(seed))
        assert lab.dtype == np.uint16 and valid.all()
        k, flip = transforms[lab.tobytes()]  # moved, never interpolated
        np.testing.assert_array_equal(img, dihedral(image, labels, k, flip)[0])
        ids, counts = np.unique(lab, return_counts=True)
        ids0, counts0 = np.unique(labels, return_counts=True)
        assert ids.tolist() == ids0.tolist() and counts.tolist() == counts0.tolist()
    np.testing.assert_array_equal(image, before[0])  # inputs untouched
    np.testing.assert_array_equal(labels, before[1])


def test_full_pipeline_reproducible_and_padding_stays_zero() -> None:
    image, labels = he_like(), disk_labels((96, 96), DISKS)
    cfg = AugmentConfig.for_modality("he", blur_prob=1.0, noise_std=0.05)
    crop, lab, valid = random_crop(image[:50], labels[:50], 64, rng(0), min_foreground=0.1)
    runs = [augment(crop, lab, valid, cfg, rng(s)) for s in (11, 11, 12)]
    for img, out_lab, out_valid in runs:
        assert img.dtype == np.float32 and img.shape == (64, 64, 3)
        assert img.min() >= 0 and img.max() <= 1 and (img[~out_valid] == 0).all()
        assert (out_lab[~out_valid] == 0).all() and out_valid.sum() == valid.sum()
        assert set(np.unique(out_lab).tolist()) <= set(np.unique(labels).tolist())
        assert set(np.unique(out_lab).tolist()) == set(np.unique(lab).tolist())
    for a, b in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][0], runs[2][0])


# --------------------------------------------------------------------------- appearance


def test_grey_invert_jpeg() -> None:
    from sac.training.appearance import invert, jpeg_roundtrip, to_grey

    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (32, 40, 3)).astype(np.float32)
    g = to_grey(img)
    assert g.shape == img.shape and np.array_equal(g[..., 0], g[..., 2])
    assert np.allclose(g[..., 0], img @ np.array([0.299, 0.587, 0.114], np.float32))
    valid = np.ones((32, 40), bool)
    valid[:, 30:] = False
    inv = invert(img, valid)
    assert np.allclose(inv[:, :30], 1 - img[:, :30]) and (inv[:, 30:] == 0).all()
    smooth = np.clip(0.5 + 0.3 * np.sin(np.arange(64) / 5)[None, :, None]
                     * np.ones((64, 1, 3)), 0, 1).astype(np.float32)
    back = jpeg_roundtrip(smooth, 50)
    assert back.shape == smooth.shape and back.dtype == np.float32
    assert 0 < np.abs(back - smooth).mean() < 0.03
    assert jpeg_roundtrip(smooth[..., :1], 50).shape == (64, 64, 1)
    with pytest.raises(ValueError, match="quality"):
        jpeg_roundtrip(smooth, 0)


def test_rescaled_crop_keeps_ids_and_scales_nuclei() -> None:
    from sac.training.appearance import rescaled_crop

    img, lab = disk_image((80, 80), [(40, 40, 10), (15, 60, 6)])
    rgb = img.astype(np.float32) / 255
    valid = np.ones((80, 80), bool)
    valid[70:] = False
    out, out_lab, out_valid = rescaled_crop(rgb, lab.astype(np.int64), valid, 100)
    assert out.shape == (100, 100, 3) and out_lab.shape == out_valid.shape == (100, 100)
    assert set(np.unique(out_lab)) == set(np.unique(lab))
    ratio = (out_lab == 1).sum() / (lab == 1).sum()
    assert abs(ratio - 1.5625) < 0.1  # area grows by (100 / 80)^2
    assert (out[~out_valid] == 0).all() and not out_valid[90:].any()


def test_robust_config_and_sampler_scale_jitter() -> None:
    from sac.training.sampler import CropSampler, TrainImage

    he, mixed = AugmentConfig.robust("he"), AugmentConfig.robust("any")
    assert he.stain and he.invert_prob == 0 and he.jpeg_prob > 0 and he.rescales
    assert not mixed.stain and mixed.invert_prob > 0
    with pytest.raises(ValueError, match="scale_range"):
        AugmentConfig(scale_range=(1.2, 0.8))
    with pytest.raises(ValueError, match="jpeg_quality"):
        AugmentConfig(jpeg_quality=(0, 50))
    img, lab = disk_image((200, 200), [(50, 50, 12), (140, 150, 12), (60, 150, 12)])
    im = TrainImage("a", img.astype(np.float32) / 255, lab.astype(np.int64))
    cfg = AugmentConfig(flips_rotations=False, intensity=False, scale_range=(0.5, 2.0))
    sampler = CropSampler([im], 96, cfg, min_foreground=0.05)
    crops = sampler.batch(0, 0, 12) + sampler.batch(0, 1, 12)
    assert all(c.rgb.shape == (96, 96, 3) and c.labels.shape == (96, 96) for c in crops)
    areas = [np.bincount(c.labels.ravel())[1:].max() for c in crops if c.labels.any()]
    assert max(areas) > 1.5 * np.pi * 144 and min(areas) < 0.8 * np.pi * 144
    again = sampler.batch(0, 0, 12)
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(crops[:12], again, strict=True))
    # the full robust pipeline keeps ids exact and padding black
    rng = np.random.default_rng(3)
    for _ in range(10):
        out, out_lab, valid = augment(im.rgb[:96, :96], im.labels[:96, :96], None, mixed, rng)
        assert set(np.unique(out_lab)) <= set(np.unique(im.labels))
        assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
        assert (out[~valid] == 0).all()
