"""The public Python API re-exported from ``sac``, and that ``import sac`` stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sac


def test_public_names_resolve_to_their_modules() -> None:
    from sac.model.store import load_model
    from sac.pipeline.segmenter import Segmenter, load_segmenter
    from sac.sam.backbones import load_sam
    from sac.sam.predictor import SamPredictor
    from sac.slides.segment import segment_slide

    assert sac.load_segmenter is load_segmenter and sac.Segmenter is Segmenter
    assert sac.load_model is load_model and sac.load_sam is load_sam
    assert sac.SamPredictor is SamPredictor and sac.segment_slide is segment_slide
    assert set(sac.__all__) <= set(dir(sac))
    with pytest.raises(AttributeError, match="no attribute"):
        sac.not_a_thing  # noqa: B018


def test_import_sac_loads_no_torch() -> None:
    code = "import sys, sac; print('torch' in sys.modules, sac.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", sac.__version__]


def test_segment_with_the_public_api(tmp_path) -> None:
    from sac.model import create_model

    from synthetic import disk_image

    model = sac.save_model(create_model(tiny=True), tmp_path / "m")
    seg = sac.load_segmenter(model)
    image, _ = disk_image((96, 96), [(40, 40, 10)])
    res = seg.segment(image)
    assert res.labels.shape == (96, 96)
    path = sac.write_labels_tif(tmp_path / "l.tif", res.labels)
    assert sac.read_image(path).shape == (96, 96)
