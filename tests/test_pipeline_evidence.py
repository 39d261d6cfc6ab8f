"""No nuclei from nothing: blank, constant, faint and pure-noise images (sac.pipeline.evidence)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sac.model import create_model, load_model
from sac.pipeline.evidence import MIN_IMAGE_SNR, drop_flat_nuclei, image_evidence
from sac.pipeline.segmenter import Segmenter

from synthetic import disk_labels, grid_disks, matched_ious

RNG = np.random.default_rng(0)
FLAT = {
    "zeros": np.zeros((128, 128, 3), np.uint8),
    "white": np.full((128, 128, 3), 255, np.uint8),
    "grey uint16": np.full((96, 80), 3000, np.uint16),
    "float ones": np.ones((64, 64, 3), np.float32),
    "near-white noise": (245 + RNG.integers(0, 10, (256, 256, 3))).astype(np.uint8),
    "dark noise": RNG.integers(0, 10, (200, 150, 3)).astype(np.uint8),
    "gaussian noise": RNG.normal(128, 20, (256, 256)).clip(0, 255).astype(np.uint8),
    "faint float noise": (0.5 + RNG.normal(0, 1e-3, (64, 64, 3))).astype(np.float32),
}


@pytest.mark.parametrize("name", sorted(FLAT))
def test_flat_and_noise_images_have_no_structure(name: str) -> None:
    ev = image_evidence(FLAT[name])
    assert not ev.has_structure and ev.snr < MIN_IMAGE_SNR, ev.snr
    assert "no structure" in ev.describe()


def test_faint_and_single_nucleus_images_have_structure() -> None:
    labels = disk_labels((256, 256), [(128, 128, 6)])  # one small nucleus, 0.2 % of pixels
    faint = (3 + 12 * (labels > 0) + RNG.normal(0, 1, labels.shape)).clip(0, 255)
    assert image_evidence(faint.astype(np.uint8)).has_structure
    image, _ = grid_disks(8)
    assert image_evidence(image).snr > 3 * MIN_IMAGE_SNR


def test_flat_nuclei_are_dropped_and_the_rest_keep_their_order() -> None:
    image, truth = grid_disks(8)  # 9 real nuclei over textured background
    grey = np.pad(image[..., 0], ((0, 0), (0, 30)), constant_values=40)  # + a flat strip
    labels = np.pad(truth, ((0, 0), (0, 30))).astype(np.uint32)
    labels[labels == 5] = 0
    labels[30:40, 80:90] = 5  # a "nucleus" on the flat strip, with id 5 of 9
    out, kept = drop_flat_nuclei(labels, image_evidence(grey))
    assert kept.tolist() == [1, 2, 3, 4, 6, 7, 8, 9]
    assert out.max() == 8 and not out[30:40, 80:90].any()
    assert np.array_equal(out[labels == 6], np.full((labels == 6).sum(), 5))


def test_nuclei_covering_the_whole_image_and_missing_ids() -> None:
    """Nuclei (with their rings) may cover every pixel, and an id may hold no pixel: neither
    warns (scipy's variance divides by the empty background's count), and the spreads are
    those scipy computes; the empty id is dropped."""
    from scipy import ndimage

    from sac.pipeline.evidence import _region_std

    image, truth = grid_disks(8)
    grey = image[..., 0].astype(np.float32)
    labels = np.where(truth > 0, truth, 1).astype(np.uint32)  # background joins nucleus 1
    labels[labels == 4] = 1  # and id 4 is left without pixels
    ids = np.array([1, 2, 3, 5, 6, 7, 8, 9])
    ours = _region_std(grey, labels, 9)
    with np.errstate(invalid="ignore"):  # scipy's own 0/0 for the absent background
        theirs = np.sqrt(ndimage.variance(grey, labels, ids))
    assert np.allclose(ours[ids], theirs, rtol=1e-6)
    assert ours[0] == ours[4] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, kept = drop_flat_nuclei(labels, image_evidence(grey))
    assert kept.tolist() == ids.tolist() and out.max() == 8


@pytest.mark.parametrize("name", ["zeros", "near-white noise", "gaussian noise"])
def test_segmenter_finds_nothing_in_flat_images(name: str) -> None:
    seg = Segmenter(create_model(tiny=True))
    res = seg.segment(FLAT[name], name, semantic=True)
    assert res.n_nuclei == 0 and not res.labels.any() and not res.semantic.any()
    assert res.labels.shape == FLAT[name].shape[:2]
    assert "no structure" in res.size.note
    off = Segmenter(create_model(tiny=True), check_evidence=False).segment(FLAT[name])
    assert "no structure" not in off.size.note  # the check can be turned off


@pytest.mark.weights
@pytest.mark.parametrize("model", ["sac-lite-monuseg", "sac-lite-dsb2018"])
def test_shipped_models_find_nothing_in_blank_images_and_faint_nuclei_still(model) -> None:
    seg = Segmenter(load_model(model), precision="bf16")
    for name in ("zeros", "white", "near-white noise", "dark noise"):
        assert seg.segment(FLAT[name], name).n_nuclei == 0, name
    if model == "sac-lite-dsb2018":  # faint fluorescence: 12 grey levels above background
        _image, truth = grid_disks(10)
        faint = (3 + (truth > 0) * 12 + RNG.normal(0, 1, truth.shape)).clip(0, 255)
        res = seg.segment(faint.astype(np.uint8), "faint")
        assert res.n_nuclei == 9 and min(matched_ious(truth, res.labels)) >= 0.7


def _he_tissue(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """A synthetic H&E field: pink stroma holding purple nuclei (one vesicular: a pale
    interior with dark chromatin granules), white fat vacuoles and a pink fibre bundle,
    all outlined as "nuclei" by a model that invents them. (RGB uint8, labels, nucleus
    ids, invented ids)."""
    rng = np.random.default_rng(seed)
    spec = [(30, 30, 9), (30, 90, 9), (90, 30, 9), (150, 150, 10),  # nuclei 1-3, vesicular 4
            (90, 150, 11), (150, 40, 12)]  # fat vacuoles 5-6
    labels = disk_labels((192, 192), spec)
    rgb = np.empty((192, 192, 3), np.float64)
    rgb[:] = (0.90, 0.55, 0.72)  # eosin pink
    for i in (1, 2, 3):
        rgb[labels == i] = (0.35, 0.25, 0.55)  # hematoxylin purple
    ves = labels == 4
    rgb[ves] = (0.88, 0.78, 0.92)  # pale, brighter than the stroma around it
    rgb[ves & (rng.random(ves.shape) < 0.4)] = (0.30, 0.22, 0.50)  # chromatin granules
    for i in (5, 6):
        rgb[labels == i] = (0.97, 0.96, 0.98)  # fat: glass white inside
    fibre = np.zeros_like(labels)
    fibre[100:112, 60:120] = 7  # a fibre bundle, denser pink than the stroma
    rgb[fibre == 7] = (0.90, 0.42, 0.64)  # denser eosin: green and blue absorbed, red not
    labels = np.where(fibre > 0, fibre, labels).astype(np.uint32)
    rgb += rng.normal(0, 0.01, rgb.shape)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), labels, [1, 2, 3, 4], [5, 6, 7]


def test_holes_fat_and_stroma_are_not_nuclei_in_bright_field() -> None:
    """A bright-field nucleus absorbs more than its surroundings (by its chromatin, even when
    its interior is pale); fat vacuoles and stroma do not, and are dropped."""
    image, labels, nuclei, invented = _he_tissue()
    ev = image_evidence(image)
    assert ev.kind == "histology"
    out, kept = drop_flat_nuclei(labels, ev)
    assert kept.tolist() == nuclei, kept
    assert out.max() == len(nuclei) and not out[np.isin(labels, invented)].any()


def test_dark_holes_are_not_nuclei_in_fluorescence() -> None:
    """In fluorescence nuclei emit: a bright disk is kept, a dark hole in a dim cytoplasm-like
    haze (as a model outlines around bright cells) is dropped."""
    spec = [(40, 40, 8), (40, 110, 8), (110, 40, 8), (110, 110, 9)]
    labels = disk_labels((160, 160), spec)
    rng = np.random.default_rng(1)
    grey = np.full(labels.shape, 40.0)
    grey[labels > 0] = 200.0
    grey[labels == 4] = 5.0  # a dark hole in the haze
    grey += rng.normal(0, 2, grey.shape)
    image = grey.clip(0, 255).astype(np.uint8)
    ev = image_evidence(image)
    assert ev.kind == "fluorescence"
    assert drop_flat_nuclei(labels, ev)[1].tolist() == [1, 2, 3]


def test_the_size_reading_counts_only_nucleus_like_objects() -> None:
    """The automatic scale reads the generator's foreground without objects that are darker
    in no colour channel (the fat vacuoles), unless the evidence check is off. The eosin
    fibre, darker in green and blue, stays in the reading: there the check is lenient, as a
    lost real nucleus would change the whole image's scale."""
    from sac.core.images import image_type
    from sac.pipeline.scale import nuclei_mask

    image, labels, nuclei, invented = _he_tissue()
    rgb = image.astype(np.float32) / 255
    mask = labels > 0
    read = nuclei_mask(mask, rgb, image_type(rgb))
    fat, fibre = invented[:2], invented[2]
    assert np.array_equal(read, np.isin(labels, [*nuclei, fibre]))
    assert not read[np.isin(labels, fat)].any()
    assert np.array_equal(nuclei_mask(mask, rgb, None), mask)  # check off
    # a stain nearly saturated in red: nuclei darker only in green and blue still count
    magenta = np.where(np.isin(labels, nuclei)[..., None], [0.93, 0.15, 0.45],
                       [0.95, 0.45, 0.70]).astype(np.float32)
    assert np.array_equal(nuclei_mask(np.isin(labels, nuclei), magenta, "histology"),
                          np.isin(labels, nuclei))


def test_per_nucleus_quantiles_match_a_plain_sort() -> None:
    """The one-sort quantiles equal each id's own sorted values at the nearest rank; an id
    without pixels gives NaN."""
    from sac.pipeline.evidence import _quantile

    rng = np.random.default_rng(3)
    ids = rng.integers(0, 40, (120, 90))
    values = rng.normal(-2, 5, ids.shape).astype(np.float32)
    ids[ids == 7] = 0  # id 7 has no pixels
    for q in (0.0, 0.25, 0.5, 1.0):
        got = _quantile(values, ids, 41, q)
        for k in range(1, 42):
            v = np.sort(values[ids == k].astype(np.float64))
            want = v[int(np.rint(q * (v.size - 1)))] if v.size else np.nan
            assert np.isclose(got[k - 1], want, atol=1e-9, equal_nan=True), (q, k)
