"""Where the image encoder runs: OpenVINO where installed (converted once, cached), else torch."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from sac.core.errors import ConfigError
from sac.model import create_model
from sac.pipeline.segmenter import Segmenter
from sac.sam import runtime
from sac.sam.runtime import OpenVinoEncoder, TorchEncoder, make_encoder, resolve_runtime

from synthetic import DEFAULT_DISKS, disk_image

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_is_openvino_on_a_cpu_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAC_RUNTIME")  # tests set it: here the machine decides
    monkeypatch.setattr(runtime, "has_openvino", lambda: False)
    assert resolve_runtime("auto", CPU) == "torch"
    model = create_model(tiny=True)
    assert isinstance(make_encoder("auto", model.sam, CPU), TorchEncoder)
    assert Segmenter(model).config_dict()["runtime"] == "torch"
    monkeypatch.setattr(runtime, "has_openvino", lambda: True)
    assert resolve_runtime("auto", CPU) == "openvino"
    assert resolve_runtime("auto", CUDA) == "torch"  # OpenVINO runs on the CPU only
    with pytest.raises(ConfigError, match="auto, torch, openvino"):
        resolve_runtime("onnx", CPU)
    with pytest.raises(ConfigError, match="CPU"):
        resolve_runtime("openvino", CUDA)
    monkeypatch.setenv("SAC_RUNTIME", "torch")  # a machine's or cluster's choice
    assert resolve_runtime("auto", CPU) == "torch" and resolve_runtime("openvino", CPU) == \
        "openvino"
    monkeypatch.setenv("SAC_RUNTIME", "onnx")
    with pytest.raises(ConfigError, match=r"\$SAC_RUNTIME"):
        resolve_runtime("auto", CPU)


def test_missing_openvino_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"segment-any-cell\[openvino\]"):
        Segmenter(create_model(tiny=True), runtime="openvino")


def test_openvino_encoder_matches_torch_at_any_size_and_converts_once(tmp_path,
                                                                      monkeypatch) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setenv("SAC_CACHE", str(tmp_path))
    model = create_model(tiny=True).eval()
    image, _ = disk_image((200, 300), DEFAULT_DISKS)
    seg = Segmenter(model, precision="fp32", runtime="openvino")
    ref = Segmenter(model, precision="fp32", runtime="torch")
    for size in (None, 320, 512):  # one converted file serves every size
        for s in (seg, ref):
            s.predictor.set_image(image.astype(np.float32) / 255, normalized=True,
                                  upscale=False, input_size=size)
        assert seg.predictor.embedding is not None and ref.predictor.embedding is not None
        assert torch.allclose(seg.predictor.embedding, ref.predictor.embedding, atol=1e-4)
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert sorted(f.name for f in files if f.parent.name != "compiled") == \
        ["encoder.bin", "encoder.xml"]  # nothing temporary left
    blobs = [f for f in files if f.parent.name == "compiled"]
    assert blobs  # OpenVINO's own cache of what it compiled, for the next process
    again = OpenVinoEncoder(model.sam)  # a new process finds the files: no second conversion
    monkeypatch.setattr(again, "convert", lambda: pytest.fail("converted twice"))
    x = torch.rand(1, 3, 256, 256)
    want = again(x, False)
    for blob in blobs:  # a damaged compiled cache is not an error: it compiles afresh
        blob.write_bytes(b"not a compiled network")
    assert torch.allclose(OpenVinoEncoder(model.sam)(x, False), want, atol=1e-5)
    other = create_model(tiny=True)  # other weights, another folder
    assert OpenVinoEncoder(other.sam).folder != again.folder
