"""The standing robustness suite: bad, odd and hostile inputs to ``sac segment``, the model
loader and ``sac tune``. For each case: the exit code, that the message names the file or
option and the problem, that nothing is partial or lost, and that the batch goes on."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sac.cli import main
from sac.core.checks import number, option
from sac.core.errors import ConfigError, InputError, SACError
from sac.core.fileio import output_stems
from sac.core.images import to_rgb_float
from sac.model import create_model, load_model, resolve_model, save_model, shipped_models
from sac.model.store import PRETRAINED_DIR
from sac.pipeline.segmenter import Segmenter

from synthetic import disk_image

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_model(create_model(tiny=True), tmp_path_factory.mktemp("m") / "model")


def _image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image, _ = disk_image((64, 72), [(30, 30, 8)], seed=seed)
    iio.imwrite(path, image) if path.suffix != ".tif" else _tif(path, image)
    return path


def _tif(path: Path, image: np.ndarray) -> None:
    import tifffile

    tifffile.imwrite(path, image)


def segment(args: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``sac segment``, refusals while parsing included."""
    try:
        code = main(["segment", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.err + out.out


# --- output names ------------------------------------------------------------------------


def test_inputs_sharing_a_stem_get_distinct_names(tmp_path, model_dir, capsys) -> None:
    ins = [_image(tmp_path / "in" / n, i) for i, n in enumerate(("a.png", "a.jpg", "a.tif"))]
    ins += [_image(tmp_path / d / "img.png") for d in ("x", "y")]
    out = tmp_path / "out"
    code, err = segment([*map(str, ins), "-o", str(out), "--model", str(model_dir),
                         "--overwrite", "--quiet"], capsys)
    assert code == 0 and "segmented 5 of 5" in err
    assert "fp32 (auto: $SAC_PRECISION), encoder in torch" in err  # what ran, and why
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["a.png_labels.tif", "a.jpg_labels.tif", "a.tif_labels.tif", "x_img.png_labels.tif",
         "y_img.png_labels.tif"])


@given(st.lists(st.tuples(st.sampled_from(["", "p", "q", "p/q"]),
                          st.sampled_from(["a", "A", "b", "a.png"]),
                          st.sampled_from([".png", ".tif", ".PNG"])), min_size=1, max_size=8))
@SETTINGS
def test_output_names_never_collide(items) -> None:
    paths = list(dict.fromkeys(Path("/data", d, n + s) for d, n, s in items))
    try:
        stems = output_stems(paths)
    except InputError as exc:
        assert "same name" in str(exc)
        return
    names = [stems[p].casefold() for p in paths]
    assert len(set(names)) == len(names)
    assert all("/" not in stems[p] for p in paths)


def test_output_folder_that_is_a_file_fails_before_any_work(tmp_path, model_dir,
                                                            capsys) -> None:
    im = _image(tmp_path / "a.png")
    (tmp_path / "out").write_text("not a folder")
    code, err = segment([str(im), "-o", str(tmp_path / "out"), "--model", str(model_dir)],
                        capsys)
    assert code == 2 and "out" in err and "is a file" in err
    assert "free some space" not in err


def test_earlier_outputs_are_not_inputs_and_reruns_skip(tmp_path, model_dir, capsys) -> None:
    folder = tmp_path / "in"
    _image(folder / "a.png")
    out = tmp_path / "out"
    args = [str(folder), "-o", str(out), "--model", str(model_dir), "--save-overlay"]
    assert segment(args, capsys)[0] == 0
    for f in out.iterdir():  # outputs copied next to the inputs are not segmented
        (folder / f.name).write_bytes(f.read_bytes())
    code, err = segment([*args, "--skip-existing"], capsys)
    assert code == 0 and "left out 2 file(s) named like SAC outputs" in err
    assert "skipped 1 input(s) whose outputs all exist" in err
    code, err = segment(args, capsys)  # without --overwrite: refused, named, nothing lost
    assert code == 2 and "a_labels.tif already exists" in err
    assert "a.png: " in err and err.count(str(folder / "a.png")) == 2  # once per line


# --- options and model configs: one validation rule ---------------------------------------

BAD_OPTIONS = [
    (["--batch-size", "-3"], "--batch-size"), (["--batch-size", "0"], "--batch-size"),
    (["--pixel-size", "nan"], "--pixel-size"), (["--pixel-size", "inf"], "--pixel-size"),
    (["--pixel-size", "1000"], "--pixel-size"), (["--scale", "0"], "--scale"),
    (["--scale", "1e9"], "--scale"), (["--device", "meta"], "meta"),
    (["--chunk-size", "10"], "--chunk-size"), (["--tile-size", "5"], "--tile-size"),
    (["--region", "0", "0", "0", "5"], "--region"), (["--diameter", "-1"], "--diameter"),
    (["--channel", "-1"], "--channel"), (["--overlap", "x"], "--overlap"),
]


@pytest.mark.parametrize(("extra", "named"), BAD_OPTIONS, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else None)
def test_bad_options_are_refused_with_exit_4(tmp_path, model_dir, capsys, extra,
                                             named) -> None:
    im = _image(tmp_path / "a.png")
    code, err = segment([str(im), "-o", str(tmp_path / "o"), "--model", str(model_dir),
                         *extra], capsys)
    assert code == 4 and named in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def _set(key: str, value: object) -> Callable[[dict], None]:
    def edit(cfg: dict) -> None:
        *path, last = key.split(".")
        node = cfg
        for k in path:
            node = node[k]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return edit


BAD_CONFIGS = [("thresholds.fg", math.nan), ("thresholds.fg", 5.0),
               ("lora_alpha", math.inf), ("input_scale", math.nan),
               ("generator_widths", []), ("thresholds", KeyError), ("input_scale", KeyError),
               ("thresholds.min_distance", 0), ("prompts.semantic_points", 0),
               ("decode_window", 1000), ("centre_target", "blob")]


@pytest.mark.parametrize(("key", "value"), BAD_CONFIGS, ids=lambda v: str(v))
def test_bad_model_configs_are_refused_by_name(tmp_path, model_dir, capsys, key,
                                               value) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    _set(key, value)(cfg)
    (bad / "config.json").write_text(json.dumps(cfg))  # NaN / Infinity as Python writes them
    with pytest.raises(ConfigError, match=key.split(".")[-1]):
        load_model(bad)
    code, err = segment([str(_image(tmp_path / "a.png")), "-o", str(tmp_path / "o"),
                         "--model", str(bad)], capsys)
    assert code == 4 and key.split(".")[-1] in err


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                 st.booleans(), st.text(max_size=3), st.none()))
@SETTINGS
def test_number_accepts_only_finite_values_in_range(value) -> None:
    try:
        got = number("x", value, 0, 10)
    except ConfigError as exc:
        assert str(exc).startswith("x must be")
        return
    assert 0 <= got <= 10 and math.isfinite(got) and not isinstance(got, bool)


@given(st.text(max_size=8))
@SETTINGS
def test_option_parser_never_crashes(text) -> None:
    import argparse

    try:
        got = option("--n", 1, 64, integer=True)(text)
    except argparse.ArgumentTypeError:
        return
    assert isinstance(got, int) and 1 <= got <= 64


# --- images: property-based over shapes, dtypes and values --------------------------------

DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64, np.bool_]


@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from([None, 1, 2, 3, 4, 5]),
       st.sampled_from(DTYPES), st.sampled_from(["zero", "random", "huge", "nan", "neg"]))
@SETTINGS
def test_any_array_is_converted_or_refused_clearly(h, w, c, dtype, values) -> None:
    shape = (h, w) if c is None else (h, w, c)
    rng = np.random.default_rng(h * 41 + w)
    data = {"zero": np.zeros(shape), "random": rng.random(shape) * 200,
            "huge": rng.random(shape) * 1e30, "nan": np.full(shape, np.nan),
            "neg": -rng.random(shape) * 100}[values]
    with np.errstate(invalid="ignore", over="ignore"):
        image = data.astype(dtype)
    try:
        out = to_rgb_float(image, "x")
    except InputError as exc:
        assert str(exc).startswith("x: ")
        return
    assert out.shape == (h, w, 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@given(st.integers(1, 70), st.integers(1, 70), st.sampled_from([np.uint8, np.uint16,
                                                               np.float32]),
       st.sampled_from(["flat", "noise", "disks"]))
@SETTINGS
def test_segmenter_gives_labels_of_the_input_size_or_a_clear_error(h, w, dtype, kind) -> None:
    seg = _tiny_segmenter()
    rng = np.random.default_rng(h * 71 + w)
    if kind == "flat":
        image = np.full((h, w), 7)
    elif kind == "noise":
        image = rng.integers(100, 110, (h, w, 3))
    else:
        image = disk_image((h, w), [(h // 2, w // 2, max(1, min(h, w) // 4))])[0]
    try:
        res = seg.segment(image.astype(dtype), "x")
    except SACError as exc:
        assert str(exc).startswith("x")
        return
    assert res.labels.shape == (h, w) and res.labels.dtype == np.uint32
    if kind != "disks":  # no nuclei from nothing
        assert res.n_nuclei == 0


_SEG: list[Segmenter] = []


def _tiny_segmenter() -> Segmenter:
    if not _SEG:
        torch.manual_seed(0)
        _SEG.append(Segmenter(create_model(tiny=True)))
    return _SEG[0]


# --- models: shipped names, read-only shipped folders, foreign files kept -----------------


def test_shipped_names_mean_shipped_models_and_paths_are_paths(tmp_path, model_dir,
                                                              monkeypatch) -> None:
    import shutil

    name = next(iter(shipped_models()), None)
    if name is None:
        pytest.skip("no shipped models installed")
    shutil.copytree(model_dir, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert resolve_model(name) == shipped_models()[name]
    assert resolve_model(f"./{name}").resolve() == (tmp_path / name).resolve()
    assert resolve_model(Path(name)).resolve() == (tmp_path / name).resolve()


def test_shipped_models_are_read_only(tmp_path) -> None:
    with pytest.raises(ConfigError, match="read-only"):
        save_model(create_model(tiny=True), PRETRAINED_DIR / "sac-lite-monuseg",
                   overwrite=True)
    name = next(iter(shipped_models()), None)
    if name is not None:
        code = main(["tune", "--model", name, "--data", str(tmp_path), "--format", "folder",
                     "--split", "monuseg"])
        assert code == 4


def test_replacing_a_model_keeps_files_it_does_not_own(tmp_path, model_dir) -> None:
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    (folder / "MODEL_CARD.md").write_text("# my notes\n")
    (folder / "extra").mkdir()
    (folder / "extra" / "x.txt").write_text("x")
    save_model(load_model(folder), folder, overwrite=True)
    assert (folder / "MODEL_CARD.md").read_text() == "# my notes\n"
    assert (folder / "extra" / "x.txt").read_text() == "x"
    load_model(folder)  # still a valid model


# --- one rule for image and slide paths ----------------------------------------------------


def test_file_pixel_size_scales_images_as_it_scales_slides(tmp_path, capsys,
                                                           monkeypatch) -> None:
    import csv

    import tifffile

    from sac.pipeline.segmenter import SegmentResult
    from sac.pipeline.size import SizeEstimate

    from synthetic import disk_labels

    torch.manual_seed(0)
    model = save_model(create_model(tiny=True, pixel_size_um=0.5, input_scale=0.5),
                       tmp_path / "m")
    image, _ = disk_image((96, 96), [(40, 40, 12), (70, 66, 10)])
    per_cm = 1e4 / 0.25  # 0.25 um per pixel: half the model's pixel size
    tifffile.imwrite(tmp_path / "t.tif", image, resolution=(per_cm, per_cm),
                     resolutionunit="CENTIMETER")
    base = [str(tmp_path / "t.tif"), "--model", str(model), "--save-csv", "--save-geojson"]
    code, err = segment([*base, "-o", str(tmp_path / "img")], capsys)
    assert code == 0 and "from the file's pixel size, 0.25 um" in err
    meta = json.loads((tmp_path / "img" / "t.geojson").read_text())["sac"]["size"]
    assert meta["scale"] == 0.5 and meta["source"] == "scale"

    def fixed(self, image, source="image", scale=None, **kwargs):  # the same nuclei always
        labels = disk_labels(image.shape[:2], [(40, 40, 12), (70, 66, 10)]).astype(np.uint32)
        return SegmentResult(labels, None, {1: 0.9, 2: 0.8}, 2, {},
                             SizeEstimate(None, 0, scale or 0.5, "scale"))

    monkeypatch.setattr(Segmenter, "segment", fixed)
    means = {}
    for out, extra in (("img2", []), ("wsi", ["--wsi", "--no-tissue-mask", "--quiet"])):
        code, err = segment([*base, "-o", str(tmp_path / out), *extra], capsys)
        assert code == 0, err
        with open(tmp_path / out / "t_nuclei.csv") as fh:
            rows = list(csv.DictReader(fh))
        means[out] = sorted(round(float(r["mean_intensity"]), 3) for r in rows)
    assert means["img2"] == means["wsi"] and min(means["wsi"]) > 1.5  # 0-255 on both paths


def test_multi_series_tiff_pages_are_picked_with_channel(tmp_path, model_dir, capsys) -> None:
    import tifffile

    image, _ = disk_image((64, 64), [(30, 30, 10)])
    with tifffile.TiffWriter(tmp_path / "p.tif") as tw:
        tw.write(np.zeros((64, 64), np.uint8))  # page 0: empty
        tw.write(image[..., 0])  # page 1: the nuclei
    code, err = segment([str(tmp_path / "p.tif"), "-o", str(tmp_path / "o"), "--model",
                         str(model_dir)], capsys)
    assert code == 2 and "--channel" in err and "(2, 64, 64)" in err
    code, err = segment([str(tmp_path / "p.tif"), "-o", str(tmp_path / "o"), "--model",
                         str(model_dir), "--channel", "1"], capsys)
    assert code == 0, err


def test_gray_alpha_images_are_read(tmp_path, model_dir, capsys) -> None:
    image, _ = disk_image((48, 48), [(20, 20, 8)])
    ga = np.stack([image[..., 0], np.full((48, 48), 255, np.uint8)], axis=-1)
    iio.imwrite(tmp_path / "ga.png", ga)
    code, err = segment([str(tmp_path / "ga.png"), "-o", str(tmp_path / "o"), "--model",
                         str(model_dir)], capsys)
    assert code == 0, err


def test_huge_png_is_named_as_too_large_not_corrupt(tmp_path, monkeypatch) -> None:
    from sac.core import checks
    from sac.data.images import read_image

    iio.imwrite(tmp_path / "big.png", np.zeros((60, 50), np.uint8))
    monkeypatch.setattr(checks, "MAX_PIXELS", 1000)
    with pytest.raises(InputError, match=r"50 x 60 .* megapixels") as exc:
        read_image(tmp_path / "big.png")
    assert "corrupt" not in str(exc.value) and "--wsi" in str(exc.value)
