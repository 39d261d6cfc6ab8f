"""The precision choice: bf16 only where the hardware computes it natively."""

from __future__ import annotations

import pytest
import torch

from sac.cli.main import build_parser
from sac.core import device
from sac.core.errors import ConfigError
from sac.model import create_model
from sac.pipeline.segmenter import Segmenter

XEON = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\nbogomips\t: 4000\n"
EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"


def test_flags_read_from_cpuinfo() -> None:
    assert "avx512_bf16" in device.flags_in(XEON)
    assert device.flags_in(EPYC) == {"fpu", "sse2", "avx2", "fma"}
    assert device.flags_in("model name: something\n") == frozenset()


@pytest.mark.parametrize(("cpuinfo", "auto"), [(XEON, True), (EPYC, False), ("", False)])
def test_auto_is_bf16_only_with_native_bf16(monkeypatch: pytest.MonkeyPatch, cpuinfo: str,
                                            auto: bool) -> None:
    monkeypatch.delenv("SAC_PRECISION")  # tests set it: here the machine decides
    monkeypatch.setattr(device, "cpu_flags", lambda: device.flags_in(cpuinfo))
    cpu = torch.device("cpu")
    assert device.use_bf16("auto", cpu) is auto
    assert device.use_bf16("bf16", cpu) and not device.use_bf16("fp32", cpu)
    seg = Segmenter(create_model(tiny=True))
    assert seg.precision == ("bf16" if auto else "fp32") == seg.config_dict()["precision"]
    assert Segmenter(create_model(tiny=True), precision="fp32").bf16 is False


def test_sac_precision_decides_auto_for_a_machine_or_cluster(monkeypatch) -> None:
    monkeypatch.setattr(device, "cpu_flags", lambda: device.flags_in(XEON))
    cpu = torch.device("cpu")
    monkeypatch.setenv("SAC_PRECISION", "fp32")
    assert not device.use_bf16("auto", cpu) and device.use_bf16("bf16", cpu)
    assert device.describe_precision("auto", cpu) == "fp32 (auto: $SAC_PRECISION)"
    monkeypatch.setenv("SAC_PRECISION", "fast")
    with pytest.raises(ConfigError, match=r"\$SAC_PRECISION must be fp32 or bf16"):
        device.use_bf16("auto", cpu)
    monkeypatch.delenv("SAC_PRECISION")
    assert device.describe_precision("auto", cpu) == "bf16 (auto: native bf16)"


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match="auto, fp32, bf16"):
        device.use_bf16("int4", torch.device("cpu"))
    with pytest.raises(ConfigError, match="precision"):
        Segmenter(create_model(tiny=True), precision="fp16")


@pytest.mark.parametrize("command", ["segment", "evaluate", "tune", "train"])
def test_every_command_takes_precision_and_the_old_bf16_flag(command: str) -> None:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    flags = {s: a for a in sub._actions for s in a.option_strings}
    assert flags["--precision"].default == "auto"
    assert flags["--precision"].choices == device.PRECISIONS
    assert flags["--bf16"].const == "bf16" and flags["--bf16"].dest == "precision"
    help_text = sub.format_help()
    assert "faster on CPU)" not in help_text and "AVX2" in help_text
