"""The ``sac`` command line: version, help, demo outputs, and bad input (message, exit code)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from sac import __version__
from sac.cli import main

from synthetic import DEFAULT_DISKS, disk_image


def test_version_and_help(capsys) -> None:
    with pytest.raises(SystemExit) as ex:
        main(["--version"])
    assert ex.value.code == 0 and __version__ in capsys.readouterr().out
    assert main([]) == 4  # no command: a usage error, help on stderr
    err = capsys.readouterr().err
    assert "demo" in err and "no command given" in err


def test_console_entry_point_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "sac", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "exit codes" in out.stdout


def test_backbones_listed(capsys) -> None:
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("lite_medsam", "vit_t", "vit_b", "vit_l", "vit_h"))


@pytest.mark.weights
def test_demo_on_synthetic_image(tmp_path, capsys) -> None:
    """Zero-shot: classical boxes prompt the real LiteMedSAM."""
    import imageio.v3 as iio

    image, _ = disk_image((256, 256), DEFAULT_DISKS)
    src = tmp_path / "disks.png"
    iio.imwrite(src, image)
    out = tmp_path / "out"
    assert main(["demo", "--image", str(src), "-o", str(out), "--zero-shot"]) == 0
    labels = tifffile.imread(out / "disks_labels.tif")
    assert labels.shape == (256, 256) and labels.dtype == np.uint16
    assert len(np.unique(labels)) - 1 == len(DEFAULT_DISKS)
    overlay = iio.imread(out / "disks_overlay.png")
    assert overlay.shape == (256, 256, 3)
    # existing outputs are not overwritten silently
    assert main(["demo", "--image", str(src), "-o", str(out), "--zero-shot"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["disks_labels.tif", "disks_overlay.png"]


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [(None, 2, "not found"), (b"", 2, "empty"), (b"\x89PNG\r\n\x1a\nbroken", 2, "")],
)
def test_demo_bad_input(tmp_path, capsys, content: bytes | None, code: int, message: str) -> None:
    src = tmp_path / "bad.png"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "out"
    assert main(["demo", "--image", str(src), "-o", str(out)]) == code
    err = capsys.readouterr().err
    assert "bad.png" in err and message in err
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_bad_options(tmp_path, capsys) -> None:
    out = ["-o", str(tmp_path / "out")]
    assert main(["demo", "--device", "cuda:7", *out]) == 4
    assert "cuda" in capsys.readouterr().err.lower()
    with pytest.raises(SystemExit) as ex:
        main(["demo", "--backbone", "vit_x", *out])
    assert ex.value.code == 4  # a usage error is a bad option, like every other
    assert main(["demo", "--zero-shot", "--backbone", "vit_b", *out]) == 4
    assert "--sam-checkpoint" in capsys.readouterr().err


def test_demo_with_a_model_folder(tmp_path, capsys) -> None:
    import imageio.v3 as iio
    import torch

    from sac.model import create_model, save_model

    torch.manual_seed(0)
    model = save_model(create_model(tiny=True), tmp_path / "model")
    image, _ = disk_image((96, 96), [(40, 40, 10)])
    iio.imwrite(tmp_path / "d.png", image)
    out = tmp_path / "out"
    assert main(["demo", "--image", str(tmp_path / "d.png"), "-o", str(out), "--model",
                 str(model)]) == 0
    assert "model" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["d_labels.tif", "d_overlay.png"]
