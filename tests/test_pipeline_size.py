"""Nucleus size estimate and automatic scale: the statistic, the rule, the pipeline, real data."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from sac.core.errors import ConfigError
from sac.core.images import as_model_rgb
from sac.core.resample import resample_image, resample_labels
from sac.model import PromptConfig, SACConfig, create_model, load_model, save_model
from sac.model.size_head import SizeHead
from sac.pipeline import scale as scale_module
from sac.pipeline.result import SegmentResult
from sac.pipeline.segmenter import Segmenter
from sac.pipeline.size import (
    DOWNSCALE_ABOVE,
    HEAD_SLACK,
    MASK_SATURATES,
    MIN_OBJECTS,
    UPSCALE_BELOW,
    head_span,
    median_diameter,
    next_scale,
    object_diameters,
    reading,
    training_size,
)

from oracle import OracleGenerator
from synthetic import disk_labels, grid_disks, matched_ious

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_object_diameters_of_disks_and_specks() -> None:
    labels = disk_labels((120, 120), [(30, 30, 10), (80, 80, 15), (30, 90, 6)])
    d = np.sort(object_diameters(labels > 0))
    assert np.allclose(d, [12, 20, 30], atol=1.5)
    mask = labels > 0
    rng = np.random.default_rng(0)
    specks = rng.integers(0, 120, (200, 2))
    noisy = mask.copy()
    noisy[specks[:, 0], specks[:, 1]] = True  # 1-px specks: more objects than nuclei
    est, n = median_diameter(noisy)
    assert n == 3 and est is not None and 19 <= est <= 31


def test_hollow_nuclei_are_measured_whole() -> None:
    """A generator may see nuclei far larger than its training data's as rings (the
    fluorescence model on 80-px disks): the reading fills the holes, or it reads the wall."""
    disks = disk_labels((400, 400), [(80, 80, 40), (80, 280, 40), (280, 180, 40)]) > 0
    cores = disk_labels((400, 400), [(80, 80, 28), (80, 280, 28), (280, 180, 28)]) > 0
    rings = disks & ~cores  # walls 12 px thick
    est, n = median_diameter(rings)
    assert n == 3 and est is not None and 78 <= est <= 82
    est, _ = median_diameter(rings, fill_holes=False)
    assert est is not None and est < 30
    new, d, _, _ = next_scale(22.0, 1.0, rings)
    assert new is not None and 0.26 <= new <= 0.3 and d is not None and 78 <= d <= 82
    assert next_scale(22.0, 1.0, rings, fill_holes=False)[0] is None  # the wall: in band


def test_median_diameter_falls_back_on_too_few_objects() -> None:
    assert median_diameter(np.zeros((64, 64), bool)) == (None, 0)
    one = disk_labels((64, 64), [(32, 32, 12)]) > 0
    assert median_diameter(one) == (None, 1)
    assert MIN_OBJECTS == 3


def test_next_scale_rule() -> None:
    small = disk_labels((200, 200), [(40, 40, 5), (40, 120, 5), (120, 80, 5)]) > 0  # d ~10
    big = disk_labels((400, 400), [(80, 80, 40), (80, 280, 40), (280, 180, 40)]) > 0  # ~80
    # within the band around the model's median: stays
    new, d, n, note = next_scale(12.0, 1.0, small)
    assert new is None and n == 3 and note == "" and 9 <= d <= 12
    # far above it: resampled to the model's median size; diameter in input pixels
    new, d, n, _ = next_scale(20.0, 1.0, big)
    assert new == pytest.approx(20.0 / d) and 75 <= d <= 82
    new, d, _, _ = next_scale(20.0, 0.5, big)  # the image was shrunk already
    assert 150 <= d <= 164 and new == pytest.approx(0.5 * 20 / (d * 0.5))
    # the band is asymmetric: nuclei 1.7x smaller than the median stay, 1.7x larger shrink
    assert UPSCALE_BELOW > 1.7 > DOWNSCALE_ABOVE
    d_small = next_scale(10.0, 1.0, small)[1]
    assert next_scale(d_small * 1.7, 1.0, small)[0] is None
    assert next_scale(d_small / 1.7, 1.0, small)[0] == pytest.approx(1 / 1.7)
    # ... unless they are smaller than nearly all training images' (the range's low end)
    new = next_scale(d_small * 1.7, 1.0, small, smallest=d_small * 1.1)[0]
    assert new == pytest.approx(1.7)
    assert next_scale(d_small * 1.7, 1.0, small, smallest=d_small * 0.9)[0] is None
    # ... and it is the lower end even below model / UPSCALE_BELOW: nuclei the size of the
    # model's smaller training images are left alone
    assert next_scale(d_small * 3, 1.0, small)[0] == pytest.approx(3, rel=0.01)
    assert next_scale(d_small * 3, 1.0, small, smallest=d_small * 0.9)[0] is None
    # first round: 1.2x smaller is enough when enlarging only downsamples the input less
    assert next_scale(d_small * 1.4, 0.5, small)[0] is None
    assert next_scale(d_small * 1.4, 0.5, small, first=True)[0] == pytest.approx(0.7)
    assert next_scale(d_small * 1.4, 1.0, small, first=True)[0] is None  # would upsample
    # far below it: enlarged
    assert next_scale(30.0, 1.0, small)[0] == pytest.approx(3.0, rel=0.25)
    # clipped scales say so
    assert "clipped" in next_scale(20.0, 0.2, big)[3]
    assert "too few" in next_scale(20.0, 1.0, np.zeros((50, 50), bool))[3]


def test_training_size_and_config() -> None:
    labs = [disk_labels((100, 100), [(25, 25, r), (70, 70, r), (25, 75, r)]) for r in (5, 8, 11)]
    d, rng = training_size(labs)
    assert 15 <= d <= 18 and rng is not None and rng[0] < d < rng[1]
    assert training_size([np.zeros((20, 20), np.uint32)]) == (None, None)
    model = create_model(tiny=True, nucleus_diameter=16.0, nucleus_diameter_range=(10.0, 22.0))
    data = model.config.to_dict()
    assert SACConfig.from_dict(data).nucleus_diameter_range == (10.0, 22.0)
    for bad in ({"nucleus_diameter": -1.0}, {"nucleus_diameter_range": [5.0, 2.0]},
                {"nucleus_diameter": float("nan")}):
        with pytest.raises(ConfigError, match="nucleus_diameter"):
            SACConfig.from_dict({**data, **bad})
    old = {k: v for k, v in data.items() if not k.startswith("nucleus_")}
    assert SACConfig.from_dict(old).nucleus_diameter is None  # older models: no auto scale


@pytest.fixture(scope="module")
def sized_model(lite_medsam):
    """Real LiteMedSAM with boxes and the brightness stand-in generator, trained size 20 px."""
    model = create_model(prompts=PromptConfig(mode="boxes"), nucleus_diameter=20.0,
                         nucleus_diameter_range=(14.0, 28.0))
    model.generator = OracleGenerator()
    return model


@pytest.mark.weights
def test_large_nuclei_are_scaled_to_the_model_size(sized_model) -> None:
    image, truth = grid_disks(40)
    res = Segmenter(sized_model).segment(image)
    assert res.size is not None and res.size.source == "estimated"
    assert 75 <= res.size.diameter <= 82 and res.size.scale == pytest.approx(0.25, rel=0.1)
    assert res.labels.shape == truth.shape
    assert res.n_nuclei == 9 and min(matched_ious(truth, res.labels)) >= 0.8
    fixed = Segmenter(sized_model, auto_scale=False).segment(image)
    assert fixed.size.source == "model" and fixed.size.scale == 1.0
    assert "look 4x the model's training size" in fixed.size.note  # says it, keeps scale 1
    given = Segmenter(sized_model).segment(image, diameter=80.0)
    assert given.size.source == "diameter" and given.size.scale == pytest.approx(0.25)
    assert given.n_nuclei == 9 and given.size.note == ""  # the estimate agrees


@pytest.mark.weights
def test_a_few_shot_model_keeps_its_scale_unless_told(sized_model) -> None:
    """A model whose config says ``auto_scale: false`` (fine-tuned on a few images of one
    setting) segments at its own scale and says why; a given diameter still applies."""
    image, _ = grid_disks(40)
    fixed = dataclasses.replace(sized_model.config, auto_scale=False)
    assert SACConfig.from_dict(fixed.to_dict()).auto_scale is False  # saved and read back
    model = create_model(prompts=PromptConfig(mode="boxes"), nucleus_diameter=20.0,
                         nucleus_diameter_range=(14.0, 28.0), auto_scale=False)
    model.generator = OracleGenerator()
    res = Segmenter(model).segment(image)
    assert res.size.source == "model" and res.size.scale == 1.0
    assert res.size.note.startswith(scale_module.FIXED_NOTE)
    assert "look 4x the model's training size" in res.size.note
    given = Segmenter(model).segment(image, diameter=80.0)
    assert given.size.source == "diameter" and given.size.scale == pytest.approx(0.25)


@pytest.mark.weights
def test_size_estimate_falls_back_and_says_so(sized_model) -> None:
    seg = Segmenter(sized_model)
    empty = seg.segment(np.zeros((128, 128, 3), np.uint8))  # blank: no nuclei, says why
    assert empty.size.source == "model" and "no structure" in empty.size.note
    assert empty.size.scale == 1.0 and empty.n_nuclei == 0
    one = (disk_labels((96, 96), [(48, 48, 12)]) > 0).astype(np.uint8) * 200
    single = seg.segment(np.stack([one] * 3, axis=-1))
    assert single.size.source == "model" and single.size.diameter is None
    assert single.n_nuclei == 1  # segmented at the model's own scale
    image, truth = grid_disks(10, n_side=4)  # 16 nuclei of 20 px and one huge artefact
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    blob = (yy < 60) & (xx > image.shape[1] - 60)  # a huge bright artefact in a corner
    image = image.copy()
    image[blob] = 220
    res = seg.segment(image)
    assert res.size.source == "estimated" and res.size.scale == 1.0
    assert 17 <= res.size.diameter <= 24
    assert sum(iou >= 0.8 for iou in matched_ious(truth, res.labels)) >= 10  # 4 under it


def test_model_without_size_refuses_diameter() -> None:
    model = create_model(tiny=True)
    with pytest.raises(ConfigError, match="does not record the nucleus size"):
        Segmenter(model).segment(np.zeros((64, 64, 3), np.uint8), diameter=20.0)
    image, _ = grid_disks(8)
    res = Segmenter(model).segment(image)
    assert res.size.source == "model" and "records no nucleus size" in res.size.note


SMALL = pytest.mark.xfail(strict=True, reason=(
    "nuclei 8 px across: measured with sac-lite-dsb2018 since its hv generator (c61b660; "
    "bright disks read as 7.7 px, enlarged 3.67x): every one found, none below IoU 0.65, but "
    "masks 1.4x too large in area (median matched IoU 0.71; the model before: 0.73)"))

@pytest.mark.weights
@pytest.mark.parametrize(("model", "radius", "ellipse"), [
    pytest.param("sac-lite-dsb2018", 4, False, marks=SMALL),
    ("sac-lite-dsb2018", 6, True), ("sac-lite-dsb2018", 10, False),
    ("sac-lite-dsb2018", 20, True), ("sac-lite-dsb2018", 40, False),
    ("sac-lite-dsb2018", 60, True),
    ("sac-lite-monuseg", 4, True),  # passes since its mask threshold was tuned (c3ed437)
    ("sac-lite-monuseg", 6, False), ("sac-lite-monuseg", 10, True),
    ("sac-lite-monuseg", 20, False), ("sac-lite-monuseg", 40, True),
    ("sac-lite-monuseg", 60, False)])
def test_shipped_models_any_nucleus_size(model: str, radius: int, ellipse: bool) -> None:
    """Nuclei from 8 to 120 px across, disks or ellipses, no flags: every one found, none
    split, median matched IoU >= 0.8. Bright nuclei on dark for the fluorescence model, dark
    on bright for the H&E one (each model on the kind of image it is for); at least 160 px of
    image, so that small nuclei come in numbers, as in a real image."""
    res, truth, n = _segment_grid(model, radius, ellipse, model == "sac-lite-monuseg")
    assert res.size.source == "estimated", res.size.describe()
    _assert_all_found(res, truth, n)


def _segment_grid(model: str, radius: int, ellipse: bool, dark: bool,
                  diameter: float | None = None) -> tuple[SegmentResult, np.ndarray, int]:
    """A grid of at least 160 px of nuclei segmented by ``model``: (result, truth, count)."""
    n_side = max(3, math.ceil(160 / (3.2 * radius)))
    image, truth = grid_disks(radius, n_side=n_side, ellipse=ellipse, dark=dark)
    res = Segmenter(load_model(model), precision="bf16").segment(image, diameter=diameter)
    return res, truth, n_side**2


def _assert_all_found(res: SegmentResult, truth: np.ndarray, n: int) -> None:
    """Every nucleus found, none split, median matched IoU >= 0.8."""
    assert res.n_nuclei == n, res.size.describe()
    ious = matched_ious(truth, res.labels)
    assert len(ious) == n and min(ious) >= 0.5, res.size.describe()
    assert np.median(ious) >= 0.8, res.size.describe()


GENERALIST_SIZE = pytest.mark.xfail(strict=True, reason=(
    "sac-lite-nuclei (b561cd4) misreads the size of synthetic nuclei (dark 80-px disks as "
    "14.4 px; bright 20-px ones, once read as 5.2 px, read right since the size reading "
    "counts only objects that stand out as nuclei; its size head is 88 % within 1.5x on "
    "validation views against 96-100 % for the specialists), so the automatic scale goes "
    "wrong; with the "
    "diameter given it finds them (test below)"))
GENERALIST_TINY = pytest.mark.xfail(strict=True, reason=(
    "sac-lite-nuclei (b561cd4), small bright nuclei with the diameter given: 8-px disks 138 "
    "of 169 found (median IoU 0.76); 12-px ellipses 82 for 81 (one split)"))
GENERALIST_CASES = [(4, False, True), (6, True, True), (10, False, True), (20, True, True),
                    (40, False, True), (60, True, True), (4, False, False), (6, True, False),
                    (10, False, False), (20, True, False), (40, False, False),
                    (60, True, False)]  # (radius, ellipse, dark)


@pytest.mark.weights
@pytest.mark.parametrize(("radius", "ellipse", "dark"), [
    c if c in ((6, True, True), (10, False, True), (20, True, True), (10, False, False))
    else pytest.param(*c, marks=GENERALIST_SIZE) for c in GENERALIST_CASES])
def test_generalist_any_nucleus_size_and_contrast(radius: int, ellipse: bool,
                                                  dark: bool) -> None:
    """The same check, no flags, for ``sac-lite-nuclei`` on both kinds of image it is for:
    dark nuclei on bright (H&E-like) and bright on dark (fluorescence)."""
    _assert_all_found(*_segment_grid("sac-lite-nuclei", radius, ellipse, dark))


@pytest.mark.weights
@pytest.mark.parametrize(("radius", "ellipse", "dark"), [
    pytest.param(*c, marks=GENERALIST_TINY) if c in ((4, False, False), (6, True, False))
    else c
    for c in GENERALIST_CASES])
def test_generalist_given_the_diameter(radius: int, ellipse: bool, dark: bool) -> None:
    """With ``diameter=`` (``sac segment --diameter``) the generalist segments nuclei of any
    size and either contrast: its masks and detection hold, only its size reading fails."""
    _assert_all_found(*_segment_grid("sac-lite-nuclei", radius, ellipse, dark, 2.0 * radius))


@pytest.mark.weights
@pytest.mark.data
def test_resampled_validation_image_gives_the_same_nuclei() -> None:
    """A DSB validation image shown at 0.5x, 2x and 3x: after the automatic scale, the nuclei
    match those of the original (count within 10 %, median matched IoU >= 0.8)."""
    from sac.data import DSB2018Dataset, load_builtin_split

    root = DATA / "dsb2018" / "stage1_train"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    name = "4e1c889de3764694d0de"  # fluorescence, 520x696, nuclei ~40 px across
    ids = [n for n in load_builtin_split("dsb2018").val if n.startswith(name)]
    sample = DSB2018Dataset(root)[ids[0]]
    rgb = sample.image[..., :3].astype(np.float32) / 255
    seg = Segmenter(load_model("sac-lite-dsb2018"), precision="bf16")
    ref = seg.segment(sample.image[..., :3]).labels
    for factor in (0.5, 2.0, 3.0):
        shown = (resample_image(rgb, factor) * 255).astype(np.uint8)
        res = seg.segment(shown)
        back = resample_labels(res.labels, ref.shape)
        n_ref, n_back = len(np.unique(ref)) - 1, len(np.unique(back)) - 1
        assert abs(n_back - n_ref) <= 0.1 * n_ref, (factor, n_ref, n_back, res.size)
        assert np.median(matched_ious(ref, back)) >= 0.8, (factor, res.size)


def test_segment_result_records_the_size(tmp_path) -> None:
    model = create_model(tiny=True)
    model.config = dataclasses.replace(model.config, nucleus_diameter=10.0)
    save_model(model, tmp_path / "m")
    res = Segmenter(load_model(tmp_path / "m")).segment(np.zeros((64, 64, 3), np.uint8),
                                                        scale=0.5)
    assert res.size.source == "scale" and res.size.scale == 0.5
    assert res.size.to_dict()["scale"] == 0.5 and "scale 0.5" in res.size.describe()


def test_segment_command_diameter_and_metadata(tmp_path) -> None:
    import json

    import imageio.v3 as iio

    from sac.cli import main

    image, _ = grid_disks(8)
    iio.imwrite(tmp_path / "im.png", image)
    model = create_model(tiny=True, nucleus_diameter=10.0, nucleus_diameter_range=(6.0, 14.0))
    save_model(model, tmp_path / "m")
    base = ["segment", str(tmp_path / "im.png"), "--model", str(tmp_path / "m"), "--quiet",
            "--save-geojson"]
    assert main([*base, "-o", str(tmp_path / "a"), "--diameter", "20"]) == 0
    meta = json.loads((tmp_path / "a" / "im.geojson").read_text())["sac"]["size"]
    assert meta["source"] == "diameter" and meta["scale"] == 0.5
    assert main([*base, "-o", str(tmp_path / "b")]) == 0
    meta = json.loads((tmp_path / "b" / "im.geojson").read_text())["sac"]["size"]
    assert meta["source"] in ("estimated", "model")
    with pytest.raises(SystemExit) as ex:
        main([*base, "-o", str(tmp_path / "c"), "--diameter", "-3"])
    assert ex.value.code == 4
    with pytest.raises(SystemExit):  # one way to set the scale at a time
        main([*base, "-o", str(tmp_path / "d"), "--diameter", "20", "--scale", "0.5"])


def test_head_span() -> None:
    lo, hi = head_span((10.0, 44.9), [0.25, 0.5, 1.0, 2.0, 4.0])
    assert lo == pytest.approx(10.0 * 0.25 / HEAD_SLACK)
    assert hi == pytest.approx(44.9 * 4.0 * HEAD_SLACK)
    assert head_span(None, [0.25, 4.0]) is None and head_span((10.0, 44.9), None) is None


@pytest.mark.parametrize("head_px, read", [(0.007, 20.0), (500.0, 20.0), (60.0, 60.0)])
def test_a_size_head_reading_outside_its_fitted_sizes_is_dropped(head_px, read,
                                                                 monkeypatch) -> None:
    """A size head that extrapolates (``sac-lite-dsb2018`` read 52-px nuclei as 0.007 px)
    must not resample the image: the mask's reading decides. Inside its span the head's
    reading is used as before (60 px, against the mask's 20: the image would be shrunk 3x).
    One round only, the one that reads the head (later rounds re-measure the mask and could
    undo a wrong first step, at up to 64x the pixels)."""
    monkeypatch.setattr(scale_module, "MAX_ROUNDS", 1)
    model = create_model(tiny=True, nucleus_diameter=20.0, nucleus_diameter_range=(14.0, 28.0),
                         size_head={"factors": [0.25, 4.0]})
    model.generator = OracleGenerator()
    model.size_head = SizeHead(np.zeros(8), np.ones(8), np.zeros(8), math.log(head_px))
    assert model.size_head.predict(np.zeros(8)) == pytest.approx(head_px, rel=1e-6)
    image, _ = grid_disks(10, n_side=4)  # 16 nuclei of 20 px: the model's own size
    _, _, size = Segmenter(model).scaled_maps(as_model_rgb(image))
    assert size.source == "estimated" and size.diameter == pytest.approx(read, rel=0.1)
    assert ("not settled" in size.note) == (read != 20.0)  # 60 px: it would resample


def test_reading_trusts_the_mask_only_well_below_the_model_size() -> None:
    # larger than the model's: the reading farther from it (both err toward it)
    assert reading(20.0, 30.0, 45.0) == 45.0 and reading(20.0, 45.0, 30.0) == 45.0
    # the mask reads well below the model's size: it is not saturated there and decides
    assert reading(20.0, 14.0, 11.0) == 14.0 and reading(20.0, 11.0, 14.0) == 11.0
    # the mask reads near the model's size (maybe clumps of tiny nuclei): the farther reading
    assert reading(20.0, 17.0, 8.0) == 8.0 and reading(20.0, 17.0, 19.0) == 17.0
    assert reading(20.0, 26.0, 9.0) == 9.0
    assert MASK_SATURATES == 1.3
    small = disk_labels((200, 200), [(40, 40, 5), (40, 120, 5), (120, 80, 5)]) > 0  # d ~10
    d = next_scale(20.0, 1.0, small)[1]
    assert next_scale(20.0, 1.0, small, measured=16.0)[0] == pytest.approx(20.0 / d)
    assert next_scale(20.0, 1.0, small, measured=5.0)[0] == pytest.approx(20.0 / d)
    assert next_scale(11.0, 1.0, small, measured=5.0)[0] == pytest.approx(11.0 / 5.0)


def _oracle_model(modality: str = "any", diameter: float = 20.0) -> object:
    model = create_model(tiny=True, nucleus_diameter=diameter,
                         nucleus_diameter_range=(diameter * 0.7, diameter * 1.4))
    model.config = dataclasses.replace(model.config, modality=modality)
    model.generator = OracleGenerator()
    return model


def test_size_evidence_tells_nuclei_from_fibres() -> None:
    from sac.pipeline.size import size_evidence

    disks = disk_labels((200, 200), [(y, x, 8) for y in range(20, 200, 40)
                                     for x in range(20, 200, 40)]) > 0
    ev = size_evidence(disks)
    assert ev.objects == 25 and ev.solidity > 0.9 and ev.spread < 1.2 and ev.weakness() == ""
    bent = np.zeros((200, 200), bool)  # curved fibres: long, thin, far from convex
    yy, xx = np.mgrid[:200, :200]
    for k in range(6):
        bent |= np.abs(np.hypot(yy - 100, xx - 30 * k) - 60) < 2
    weak = size_evidence(bent).weakness()
    assert "unlike nuclei" in weak or "nucleus-like objects" in weak
    few = size_evidence(disks[:45, :85])  # 2 disks only
    assert "nucleus-like objects" in few.weakness()
    irregular = dataclasses.replace(ev, solidity=0.85, disagreement=3.0)
    assert "disagree" in irregular.weakness()
    assert dataclasses.replace(ev, disagreement=3.0).weakness() == ""  # regular: head's error


def test_too_little_evidence_keeps_the_model_scale() -> None:
    """Three nuclei of 80 px read 4x the model's size: without the evidence rule the
    image was shrunk 4x on them; now it stays at the model's scale and says why."""
    image = (disk_labels((260, 260), [(60, 60, 40), (60, 190, 40), (190, 120, 40)]) > 0)
    image = np.stack([image.astype(np.uint8) * 200] * 3, -1)
    _, _, size = Segmenter(_oracle_model()).scaled_maps(as_model_rgb(image))
    assert size.source == "model" and size.scale == 1.0
    assert "too little evidence" in size.note and "3 nucleus-like objects" in size.note


def test_the_scale_stays_in_the_modality_band() -> None:
    """Nuclei 80 px across for an H&E model trained on 10 px: the reading asks for 1/8;
    H&E is scanned at 10x-60x, so the automatic scale stops at 1/2 and says so."""
    image, _ = grid_disks(40)
    _, _, size = Segmenter(_oracle_model("he", 10.0)).scaled_maps(as_model_rgb(image))
    assert size.scale == pytest.approx(0.5) and "plausible" in size.note
    _, _, wide = Segmenter(_oracle_model("any", 10.0)).scaled_maps(as_model_rgb(image))
    assert wide.scale == pytest.approx(1 / 6) and "plausible" in wide.note


class _Specks(OracleGenerator):
    """A generator that sees 4-px specks on a fixed 12-px grid whatever the image's scale:
    texture, not nuclei."""

    def forward(self, x):  # type: ignore[override]
        import torch

        h, w = x.shape[-2:]
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        fg = (((yy % 12) - 6) ** 2 + ((xx % 12) - 6) ** 2 <= 4).float()
        probs = torch.stack([fg, torch.zeros_like(fg), fg], 0)[None].expand(x.shape[0], -1,
                                                                            -1, -1)
        return torch.logit(probs.clamp(1e-4, 1 - 1e-4))


def test_objects_that_do_not_grow_with_the_image_are_texture() -> None:
    """The runaway case: background texture read as tiny nuclei enlarged the image up to 8x
    round after round. Enlarged once, nuclei read larger; texture does not, and the model's
    scale is kept."""
    model = _oracle_model()
    model.generator = _Specks()
    rgb = np.random.default_rng(0).random((96, 96, 3)).astype(np.float32)
    rgb2, _, size = Segmenter(model).scaled_maps(rgb)
    assert size.source == "model" and size.scale == 1.0 and rgb2.shape == rgb.shape
    assert "did not grow" in size.note
