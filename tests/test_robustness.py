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
