"""Where the image encoder runs: torch, or ONNX Runtime exported once per size and cached."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from sac.core.errors import ConfigError
from sac.model import create_model
from sac.pipeline.segmenter import Segmenter
from sac.sam.runtime import (
    ONNX_MULTIPLE,
    OnnxEncoder,
    OpenVinoEncoder,
    TorchEncoder,
    make_encoder,
)

from synthetic import DEFAULT_DISKS, disk_image


def test_torch_is_the_default_and_names_are_checked() -> None:
    model = create_model(tiny=True)
    assert isinstance(make_encoder("torch", model.sam, torch.device("cpu")), TorchEncoder)
    assert Segmenter(model).config_dict()["runtime"] == "torch"
    with pytest.raises(ConfigError, match="torch, openvino, onnx"):
        make_encoder("tensorrt", model.sam, torch.device("cpu"))
    with pytest.raises(ConfigError, match="CPU"):
        make_encoder("onnx", model.sam, torch.device("cuda"))


@pytest.mark.parametrize(("runtime", "module"), [("onnx", "onnxruntime"),
                                                 ("openvino", "openvino")])
def test_missing_runtime_says_what_to_install(monkeypatch: pytest.MonkeyPatch, runtime: str,
                                              module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=rf"segment-any-cell\[{runtime}\]"):
        Segmenter(create_model(tiny=True), runtime=runtime)


def test_openvino_encoder_matches_torch_at_any_size_and_converts_once(tmp_path,
                                                                      monkeypatch) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setenv("SAC_CACHE", str(tmp_path))
    model = create_model(tiny=True).eval()
    image, _ = disk_image((200, 300), DEFAULT_DISKS)
    seg = Segmenter(model, precision="fp32", runtime="openvino")
    ref = Segmenter(model, precision="fp32")
    for size in (None, 320, 512):  # one converted file serves every size
        for s in (seg, ref):
            s.predictor.set_image(image.astype(np.float32) / 255, normalized=True,
                                  upscale=False, input_size=size)
        assert seg.predictor.embedding is not None and ref.predictor.embedding is not None
        assert torch.allclose(seg.predictor.embedding, ref.predictor.embedding, atol=1e-4)
    assert sorted(f.name for f in tmp_path.rglob("*") if f.is_file()) == \
        ["encoder.bin", "encoder.xml"]  # nothing temporary left
    again = OpenVinoEncoder(model.sam)  # a new process finds the files: no second conversion
    monkeypatch.setattr(again, "convert", lambda: pytest.fail("converted twice"))
    again.model(False)


def test_onnx_encoder_matches_torch_and_is_exported_once(tmp_path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    monkeypatch.setenv("SAC_CACHE", str(tmp_path))
    model = create_model(tiny=True).eval()
    image, _ = disk_image((200, 300), DEFAULT_DISKS)
    seg = Segmenter(model, precision="fp32", runtime="onnx")
    ref = Segmenter(model, precision="fp32")
    for s in (seg, ref):
        s.predictor.set_image(image.astype(np.float32) / 255, normalized=True, upscale=False,
                              input_size=ONNX_MULTIPLE * 2)
    assert seg.predictor.embedding is not None and ref.predictor.embedding is not None
    assert torch.allclose(seg.predictor.embedding, ref.predictor.embedding, atol=1e-4)
    files = sorted(tmp_path.rglob("*.onnx"))
    assert [f.name for f in files] == [f"encoder_{2 * ONNX_MULTIPLE}.onnx"]  # nothing temporary
    again = OnnxEncoder(model.sam)  # a new process would find the file: no second export
    monkeypatch.setattr(again, "export", lambda size: pytest.fail("exported twice"))
    again.session(2 * ONNX_MULTIPLE)
    with pytest.raises(ValueError, match=f"multiple of {ONNX_MULTIPLE}"):
        seg.predictor.set_image(image, input_size=ONNX_MULTIPLE + 16)
    other = create_model(tiny=True)  # other weights, other folder
    assert OnnxEncoder(other.sam).folder != again.folder
