"""Cases of the 214-case probe (issue 46) that destroyed or half-wrote outputs: an input
written over, interrupts and SIGTERM mid-image, damaged resume folders of whole slides. Each
failed before its fix; tiny models, synthetic inputs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch

from sac.cli import main
from sac.model import create_model, save_model
from sac.pipeline.segmenter import Segmenter
from sac.slides.segment import segment_slide

from synthetic import disk_image, write_pyramid


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_model(create_model(tiny=True), tmp_path_factory.mktemp("m") / "model")


def _run(args: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.err + out.out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_input_is_never_written_whatever_the_flags(tmp_path, model_dir, capsys) -> None:
    """``a.png`` and ``a_labels.tif`` (an earlier output, or any file so named) both inputs,
    ``-o`` their own folder, ``--overwrite``: ``a.png``'s labels used to replace the input
    ``a_labels.tif``, which was then read back and segmented (exit 0)."""
    image, labels = disk_image((64, 72), [(30, 30, 8)])
    iio.imwrite(tmp_path / "a.png", image)
    tifffile.imwrite(tmp_path / "a_labels.tif", labels.astype(np.uint16) * 200)
    before = _digest(tmp_path / "a_labels.tif")
    code, err = _run(["segment", str(tmp_path / "a.png"), str(tmp_path / "a_labels.tif"),
                      "-o", str(tmp_path), "--model", str(model_dir), "--overwrite"], capsys)
    assert code == 2, err
    assert "would replace the input" in err and "a.png" in err
    assert _digest(tmp_path / "a_labels.tif") == before  # the input is untouched
    assert (tmp_path / "a_labels_labels.tif").is_file()  # the other input still ran
    assert "segmented 1 of 2 input(s)" in err


@pytest.mark.parametrize("how, code", [("sigint", 130), ("sigterm", 143)])
def test_an_interrupted_image_leaves_none_of_its_outputs(tmp_path, model_dir, capsys,
                                                         monkeypatch, how, code) -> None:
    """Interrupted after ``b2_labels.tif`` and ``b2_semantic.png`` appeared: they stayed
    without the rest, and ``--skip-existing`` then refused the rerun. SIGTERM gave exit 143
    and no message."""
    import sac.outputs.images as out_images

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        iio.imwrite(folder / f"b{i}.png", disk_image((64, 72), [(30, 30 + 5 * i, 8)],
                                                     seed=i)[0])
    real = out_images.outline_overlay
    calls = {"n": 0}

    def overlay(*a, **k):  # the third image's overlay: labels and semantic already written
        calls["n"] += 1
        if calls["n"] == 3:
            if how == "sigint":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(out_images, "outline_overlay", overlay)
    out = tmp_path / "out"
    args = ["segment", str(folder), "-o", str(out), "--model", str(model_dir),
            "--save-semantic", "--save-overlay", "--save-geojson", "--save-rois",
            "--save-csv"]
    got, err = _run(args, capsys)
    assert got == code and "left no outputs" in err
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("b2")) == []
    assert len([p for p in out.iterdir() if p.name.startswith("b1")]) == 6
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files
    monkeypatch.setattr(out_images, "outline_overlay", real)
    got, err = _run([*args, "--skip-existing"], capsys)  # the documented resume works
    assert got == 0 and "skipped 2 input(s)" in err
    assert len([p for p in out.iterdir() if p.name.startswith("b2")]) == 6
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is restored


@pytest.fixture()
def slide_model() -> Segmenter:
    torch.manual_seed(0)
    return Segmenter(create_model(tiny=True, pixel_size_um=0.5))


def _interrupted_slide(seg: Segmenter, tmp_path: Path) -> tuple[Path, Path]:
    image, _ = disk_image((300, 300), [(60, 60, 10), (200, 220, 12)])
    path = write_pyramid(tmp_path / "s.tif", image)
    done = {"n": 0}

    def stop(tile, status):
        done["n"] += 1
        if done["n"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        segment_slide(seg, path, tmp_path / "out", chunk=128, overlap=32, tissue=False,
                      progress=False, on_chunk=stop)
    return path, tmp_path / "out" / "s.sac-parts"


@pytest.mark.parametrize("damage", [b"", b'{"status": "done", "nuc', b'{"status": "done"}',
                                    b'{"status": "done", "nuclei": [{"score": 1}]}'])
def test_a_damaged_slide_part_is_recomputed(tmp_path, slide_model, caplog, damage) -> None:
    """A resume folder holding a truncated part: every rerun failed with "unexpected
    JSONDecodeError ... (a bug in SAC)". The part is named, removed and recomputed."""
    path, parts = _interrupted_slide(slide_model, tmp_path)
    first = sorted(parts.glob("*.json"))
    victim = next(p for p in first if p.name != "manifest.json")
    victim.write_bytes(damage)
    res = segment_slide(slide_model, path, tmp_path / "out", chunk=128, overlap=32,
                        tissue=False, progress=False)
    assert res.n_resumed == 1 and res.outputs  # the damaged part was computed again
    assert victim.name in caplog.text and "damaged slide part" in caplog.text
    assert not parts.exists()


@pytest.mark.parametrize("manifest, said", [
    (b'{"slide": ', "damaged manifest"), (b"{}", "damaged manifest"),
    (None, "damaged manifest")])
def test_merge_slide_names_a_damaged_manifest(tmp_path, slide_model, capsys, manifest,
                                              said) -> None:
    """``sac merge-slide`` with a truncated manifest or one without ``level``: tracebacks."""
    _, parts = _interrupted_slide(slide_model, tmp_path)
    mpath = parts / "manifest.json"
    if manifest is None:  # a manifest without its level
        doc = json.loads(mpath.read_text())
        del doc["level"]
        manifest = json.dumps(doc).encode()
    mpath.write_bytes(manifest)
    code, err = _run(["merge-slide", str(parts)], capsys)
    assert code == 2 and said in err and str(mpath) in err and "Traceback" not in err


# --- silent garbage: extreme floats, damaged or absurd model files -------------------------


def test_extreme_float_images_scale_like_their_ordinary_copy() -> None:
    """float64 beyond float32's range (x 1e39), float32 spanning -3e38..3e38: min-max
    scaling overflowed (0 nuclei, RuntimeWarnings); the same image x 1 gave 11 nuclei."""
    from sac.core.images import to_rgb_float

    a = np.random.default_rng(0).random((16, 16))
    ref = to_rgb_float(a)
    with np.errstate(all="raise"):
        big = to_rgb_float(a * 1e39)
        wide = to_rgb_float(((a * 2 - 1) * 3e38).astype(np.float32))
    np.testing.assert_allclose(big, ref, atol=1e-6)
    np.testing.assert_allclose(wide, ref, atol=1e-6)


def _saved_tiny(tmp_path: Path, seed: int = 0, name: str = "m") -> Path:
    torch.manual_seed(seed)
    return save_model(create_model(tiny=True), tmp_path / name)


def _without_digests(folder: Path) -> None:
    doc = json.loads((folder / "config.json").read_text())
    doc.pop("file_sha256")
    (folder / "config.json").write_text(json.dumps(doc))


def _rewrite(folder: Path, part: str, fn) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / f"{part}.safetensors"))
    save_file({k: fn(v) for k, v in state.items()}, str(folder / f"{part}.safetensors"))


@pytest.mark.parametrize("case, said", [
    ("nan", "NaN or infinite"), ("nan unrecorded", "NaN or infinite"),
    ("inf unrecorded", "NaN or infinite"), ("int16 unrecorded", "stored as torch.int16"),
    ("other model's part", "recorded in config.json")])
def test_damaged_model_parts_are_refused(tmp_path, capsys, case, said) -> None:
    """All-NaN generator, all-Inf LoRA, a part stored as int16, another model's part: all
    loaded and gave 0-1 nuclei, saying nothing."""
    folder = _saved_tiny(tmp_path)
    if "unrecorded" in case:  # a model saved before the digests were recorded
        _without_digests(folder)
    if case.startswith("nan"):
        _rewrite(folder, "generator", lambda v: torch.full_like(v, float("nan")))
    elif case.startswith("inf"):
        _rewrite(folder, "lora", lambda v: torch.full_like(v, float("inf")))
    elif case.startswith("int16"):
        _rewrite(folder, "mask_decoder", lambda v: v.to(torch.int16))
    else:
        other = _saved_tiny(tmp_path, seed=1, name="other")
        (folder / "generator.safetensors").write_bytes(
            (other / "generator.safetensors").read_bytes())
    image = tmp_path / "x.png"
    iio.imwrite(image, disk_image((64, 64), [(30, 30, 8)])[0])
    code, err = _run(["segment", str(image), "-o", str(tmp_path / "o"), "--model",
                      str(folder)], capsys)
    assert code == 3 and said in err and "Traceback" not in err, err


HUGE_INT = "1" * 5001
DEEP = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize("edit, said", [
    ({"size_head": {"factors": [-4, 0]}}, "size_head.factors"),
    ({"size_head": {"factors": "abc"}}, "size_head.factors"),
    ({"nucleus_diameter": 1e-300}, "nucleus_diameter"),
    ({"nucleus_diameter": 1e300}, "nucleus_diameter"),
    ({"nucleus_diameter": 10.0, "nucleus_diameter_range": [1e-300, 1e300]},
     "nucleus_diameter_range"),
    ({"backbone_overrides": {"encoder": {"img_size": "x"}}}, "img_size"),
    ({"backbone_overrides": {"encoder": {"img_size": -256}}}, "img_size"),
    ({"lora_blocks": [999]}, "lora_blocks"),
    ("huge", "config.json"), ("deep", "config.json"),
], ids=lambda v: str(v)[:40])
def test_absurd_config_values_are_refused_by_name(tmp_path, capsys, edit, said) -> None:
    """Values that passed the checks but were absurd (8 nuclei instead of 17), and configs
    that raised ValueError, RecursionError or TypeError tracebacks."""
    folder = _saved_tiny(tmp_path)
    path = folder / "config.json"
    doc = json.loads(path.read_text())
    if edit == "huge":
        text = json.dumps(doc).replace('"lora_rank": 4', f'"lora_rank": {HUGE_INT}')
    elif edit == "deep":
        text = json.dumps(doc).replace('"training": {}', f'"training": {{"x": {DEEP}}}')
    else:
        if "backbone_overrides" in edit:
            over = doc["backbone_overrides"]
            over["encoder"].update(edit["backbone_overrides"]["encoder"])
            edit = {"backbone_overrides": over}
        doc.update(edit)
        text = json.dumps(doc)
    path.write_text(text)
    image = tmp_path / "x.png"
    iio.imwrite(image, disk_image((64, 64), [(30, 30, 8)])[0])
    code, err = _run(["segment", str(image), "-o", str(tmp_path / "o"), "--model",
                      str(folder)], capsys)
    assert code == 4 and said in err and "Traceback" not in err and "a bug" not in err, err


class _Payload:
    """A pickle that would run a command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_pickle_with_code_is_named_as_such_and_never_run(tmp_path, protocol) -> None:
    """A checkpoint whose payload calls ``os.system`` got the generic "corrupt or
    truncated" message: torch's wording was not matched."""
    import pickle

    from sac.core.errors import WeightsError
    from sac.sam.weights import read_state_dict

    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    with path.open("wb") as f:
        pickle.dump({"w": _Payload(marker)}, f, protocol=protocol)
    with pytest.raises(WeightsError, match="holds pickled Python objects"):
        read_state_dict(path)
    assert not marker.exists()


def test_image_files_read_as_a_user_sees_them(tmp_path) -> None:
    """EXIF Orientation=6 (labels came out in the stored grid), a z-stack of 150 pages of
    128 x 128 read as channels-last with --channel 3, --channel 0 refused on a gray image,
    an unreadable file called corrupt, a large valid PNG called corrupt by Pillow's check."""
    from PIL import Image

    from sac.core import checks
    from sac.core.errors import InputError
    from sac.data.images import read_image

    a = np.zeros((20, 40, 3), np.uint8)
    a[:5, :10] = 255
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    shown = read_image(tmp_path / "r.jpg")
    assert shown.shape == (40, 20, 3) and shown[:10, -5:].mean() > 200  # top right, upright
    stack = np.arange(150 * 128 * 128, dtype=np.uint16).reshape(150, 128, 128)
    tifffile.imwrite(tmp_path / "z.tif", stack)
    page = read_image(tmp_path / "z.tif", channel=3)
    assert page.shape == (128, 128) and np.array_equal(page, stack[3])
    gray = tmp_path / "g.png"
    iio.imwrite(gray, a[..., 0])
    assert read_image(gray, channel=0).shape == (20, 40)
    with pytest.raises(InputError, match="one channel"):
        read_image(gray, channel=1)
    big = tmp_path / "big.png"
    Image.new("L", (15000, 13000)).save(big)  # 195 MP: over Pillow's 179 MP, under SAC's 400
    assert read_image(big).shape == (13000, 15000)
    old = checks.MAX_PIXELS
    checks.MAX_PIXELS = 100_000_000
    try:
        with pytest.raises(InputError, match="megapixels"):
            read_image(big)
    finally:
        checks.MAX_PIXELS = old


# --- training and tuning on empty labels, damaged run folders ------------------------------


def _train(data: Path, run: Path, capsys, *extra: str) -> tuple[int, str]:
    return _run(["train", "--data", str(data), "--format", "folder", "-o", str(run), "--tiny",
                 "--epochs", "1", "--steps-per-epoch", "2", "--quiet", "--no-tune",
                 "--no-size-head", *extra], capsys)


def test_labels_without_nuclei_are_refused(tmp_path, capsys) -> None:
    """``sac train`` on all-zero labels reported "pixel_dice 1.000, aji 1.000 (best,
    saved)"; ``sac tune`` reported F1 1.000 and saved; a prompts CSV holding only its header
    changed the result (8 nuclei became 14)."""
    from synthetic import write_disk_folder

    data = write_disk_folder(tmp_path / "d", n=3, size=96)
    for f in (data / "labels").iterdir():
        tifffile.imwrite(f.with_suffix(".tif"), np.zeros((96, 96), np.uint16))
        if f.suffix != ".tif":
            f.unlink()
    code, err = _train(data, tmp_path / "r", capsys)
    assert code == 2 and "hold no nucleus" in err and not (tmp_path / "r" / "model").exists()


def test_a_header_only_prompts_file_is_no_prompts(tmp_path, model_dir, capsys) -> None:
    image = tmp_path / "x.png"
    iio.imwrite(image, disk_image((64, 72), [(30, 30, 8), (40, 55, 7)])[0])
    (tmp_path / "p.csv").write_text("x,y,label\n")
    outs = []
    for extra in ([], ["--prompts", str(tmp_path / "p.csv")]):
        out = tmp_path / f"o{len(extra)}"
        assert _run(["segment", str(image), "-o", str(out), "--model", str(model_dir),
                     *extra], capsys)[0] == 0
        outs.append(tifffile.imread(out / "x_labels.tif"))
    assert np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("damage, code, said", [
    ("pickle", 3, "pickled Python objects"), ("random", 2, "corrupt or truncated"),
    ("empty", 2, "empty (0 bytes)"), ("structure", 2, "does not hold a SAC training state"),
    ("config", 2, "train_config.json is damaged"), ("settings", 4, "train.lr")])
def test_resume_names_a_damaged_run(tmp_path, capsys, damage, code, said) -> None:
    """A pickled ``state.pt`` relayed torch's advice to set weights_only=False (exit 2, not
    3); random bytes the same; 0 bytes an empty reason; a wrong structure and a truncated
    ``train_config.json`` tracebacks; "settings differ" did not say which."""
    import pickle

    from synthetic import write_disk_folder

    data = write_disk_folder(tmp_path / "d", n=3, size=96)
    run = tmp_path / "r"
    assert _train(data, run, capsys)[0] == 0
    state = run / "last" / "state.pt"
    extra: list[str] = []
    if damage == "pickle":
        with state.open("wb") as f:
            pickle.dump({"w": _Payload(tmp_path / "ran")}, f, protocol=2)
    elif damage == "random":
        state.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "empty":
        state.write_bytes(b"")
    elif damage == "structure":
        torch.save({"step": 3}, state)
    elif damage == "config":
        (run / "train_config.json").write_text('{"train": {"ep')
    else:
        extra = ["--lr", "1e-3"]
    got, err = _train(data, run, capsys, "--resume", *extra)
    assert got == code and said in err and "Traceback" not in err, err
    assert "weights_only=False" not in err and not (tmp_path / "ran").exists()


# --- slides, long names, the Python API -----------------------------------------------------


def test_a_corrupt_thumbnail_read_says_how_to_do_without(tmp_path, slide_model,
                                                         monkeypatch) -> None:
    """A corrupt tile anywhere stopped the tissue mask's thumbnail read, so a --region far
    from it failed too, with no hint that --no-tissue-mask avoids it."""
    import sac.slides.segment as slide_segment
    from sac.core.errors import InputError

    image, _ = disk_image((300, 300), [(60, 60, 10)])
    path = write_pyramid(tmp_path / "s.tif", image)

    def broken(slide):
        raise OSError("TIFF tile 7: decoding failed")

    monkeypatch.setattr(slide_segment, "slide_tissue_mask", broken)
    with pytest.raises(InputError, match="--no-tissue-mask"):
        segment_slide(slide_model, path, tmp_path / "o", chunk=128, overlap=32,
                      progress=False)
    res = segment_slide(slide_model, path, tmp_path / "o", chunk=128, overlap=32,
                        tissue=False, progress=False)
    assert res.outputs


def test_a_long_input_name_is_written(tmp_path, model_dir, capsys) -> None:
    """A 240-character input name failed after the work was done: the temporary file's name
    passed 255 bytes, and the message blamed the output folder."""
    name = "n" * 236 + ".png"
    iio.imwrite(tmp_path / name, disk_image((64, 64), [(30, 30, 8)])[0])
    code, err = _run(["segment", str(tmp_path / name), "-o", str(tmp_path / "o"), "--model",
                      str(model_dir)], capsys)
    assert code == 0, err
    assert (tmp_path / "o" / f"{'n' * 236}_labels.tif").is_file()


@pytest.mark.parametrize("call, said", [
    (lambda seg, m, im: Segmenter(m, tile_size=0), "tile_size"),
    (lambda seg, m, im: Segmenter(m, thresholds="x"), "thresholds"),
    (lambda seg, m, im: Segmenter(None), "SAC model"),
    (lambda seg, m, im: seg.segment(im, scale=0), "scale"),
    (lambda seg, m, im: seg.segment(im, scale=float("nan")), "scale"),
    (lambda seg, m, im: seg.segment(im, diameter=0), "diameter"),
])
def test_the_python_api_checks_its_arguments(call, said) -> None:
    """``tile_size=0``, ``thresholds="x"`` were accepted; ``Segmenter(None)``, ``scale=0``
    (ZeroDivisionError), ``scale=nan``, ``diameter=0`` raised untyped errors."""
    from sac.core.errors import ConfigError

    torch.manual_seed(0)
    model = create_model(tiny=True, nucleus_diameter=10.0)
    seg = Segmenter(model)
    image = disk_image((64, 64), [(30, 30, 8)])[0]
    with pytest.raises(ConfigError, match=said):
        call(seg, model, image)


def test_api_files_refuse_what_they_cannot_hold(tmp_path, slide_model) -> None:
    from sac.core.errors import ConfigError, InputError
    from sac.data.images import read_image
    from sac.outputs.images import write_labels_tif

    for bad in (np.ones((4, 4), np.float32), -np.ones((4, 4), np.int32),
                np.ones((2, 4, 4), np.uint16)):
        with pytest.raises(InputError, match="2-D array of non-negative integer"):
            write_labels_tif(tmp_path / "l.tif", bad)
    assert not (tmp_path / "l.tif").exists()
    iio.imwrite(tmp_path / "x.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ConfigError, match="channel"):
        read_image(tmp_path / "x.png", channel="a")
    with pytest.raises(ConfigError, match="chunk"):
        segment_slide(slide_model, tmp_path / "x.png", tmp_path, chunk=0, progress=False)


def test_an_output_path_that_is_a_folder_is_named(tmp_path, model_dir, capsys) -> None:
    """``--overwrite`` where an output path was an existing folder: the message named -o,
    not the path in the way."""
    iio.imwrite(tmp_path / "a.png", disk_image((64, 64), [(30, 30, 8)])[0])
    out = tmp_path / "o"
    (out / "a_labels.tif").mkdir(parents=True)
    code, err = _run(["segment", str(tmp_path / "a.png"), "-o", str(out), "--model",
                      str(model_dir), "--overwrite"], capsys)
    assert code == 2 and f"{out / 'a_labels.tif'} is a folder" in err


def test_unreadable_files_and_folders_are_named_as_such(tmp_path_factory) -> None:
    """An unreadable input folder gave a traceback from expand_inputs, an unreadable file
    "the file is corrupt or not really this format". Run as an unprivileged user (root
    reads any file whatever its mode), with setpriv where the machine has it."""
    import shutil
    import subprocess
    import sys
    import tempfile

    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run a check as an unprivileged user")
    base = Path(tempfile.mkdtemp(prefix="sac-perm-"))
    try:
        base.chmod(0o777)
        closed = base / "closed"
        closed.mkdir()
        iio.imwrite(closed / "a.png", np.zeros((8, 8), np.uint8))
        closed.chmod(0o000)
        secret = base / "secret.png"
        iio.imwrite(secret, np.zeros((8, 8), np.uint8))
        secret.chmod(0o000)
        code = ("from sac.data.inputs import expand_inputs\n"
                "from sac.data.images import read_image\n"
                f"print(expand_inputs([{str(closed)!r}])[1])\n"
                f"try:\n    read_image({str(secret)!r})\n"
                "except Exception as e:\n    print(type(e).__name__, e)\n")
        user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                sys.executable, "-c"]
        env = {**os.environ, "HOME": str(base)}
        probe = subprocess.run([*user, "import sac.data.images"], capture_output=True,
                               text=True, timeout=120, env=env)
        if probe.returncode != 0:  # this checkout is not readable by other users
            pytest.skip(f"an unprivileged user cannot import sac here: {probe.stderr[-200:]}")
        out = subprocess.run([*user, code], capture_output=True, text=True, timeout=120,
                             env=env)
        assert out.returncode == 0, out.stderr
        assert "cannot list the folder: Permission denied" in out.stdout
        assert "InputError" in out.stdout and "cannot read the file (Permission denied)" \
            in out.stdout and "corrupt" not in out.stdout
    finally:
        for p in (base / "closed", base / "secret.png"):
            p.chmod(0o755)
        shutil.rmtree(base)
