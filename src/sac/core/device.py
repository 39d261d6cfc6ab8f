"""Torch devices: checking a device name, and the numeric precision to run at.

bf16 autocast halves the encoder's time on CPUs with native bf16 arithmetic (AVX512-BF16 or
AMX) and on GPUs, but makes it several times *slower* on CPUs without it (AVX2 only, most
laptops), where it is emulated: ``auto`` therefore picks bf16 only where it is native.
"""

from __future__ import annotations

import functools
import os
import platform
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from sac.core.errors import ConfigError


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse a device name and check that it is usable here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {device!r} cannot run SAC; use cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA GPU is available; use cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps was requested but MPS is not available; use cpu")
    return dev


#: ``--precision`` choices: ``auto`` = bf16 where the hardware has it natively, else fp32
PRECISIONS = ("auto", "fp32", "bf16")
#: CPU flags (Linux ``/proc/cpuinfo``) that mean native bf16 arithmetic
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where the OS does not list them)."""
    info = Path("/proc/cpuinfo")
    if platform.system() != "Linux" or not info.is_file():
        return frozenset()
    return flags_in(info.read_text(errors="replace"))


def flags_in(cpuinfo: str) -> frozenset[str]:
    """The ``flags`` of the first CPU in the text of a Linux ``/proc/cpuinfo``."""
    for line in cpuinfo.splitlines():
        if line.split(":", 1)[0].strip() == "flags" and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively: a CUDA GPU that supports it, or a CPU
    with AVX512-BF16 or AMX (Apple and Windows CPUs count as not, as they do not say)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(NATIVE_BF16_FLAGS & cpu_flags())
    return False


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to run in bf16 autocast for ``precision`` (one of :data:`PRECISIONS`);
    ``auto`` follows ``$SAC_PRECISION`` (fp32 or bf16) where it is set, for a machine or a
    cluster whose nodes should all compute alike."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got "
                          f"{precision!r}")
    if precision == "auto" and os.environ.get("SAC_PRECISION"):
        precision = os.environ["SAC_PRECISION"]
        if precision not in PRECISIONS[1:]:
            raise ConfigError(f"$SAC_PRECISION must be fp32 or bf16; got {precision!r}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


def describe_precision(precision: str, device: torch.device) -> str:
    """What ``precision`` means on ``device``, for run summaries: ``"bf16 (auto: native
    bf16)"``, ``"fp32 (auto: no native bf16)"``, ``"fp32"``."""
    used = "bf16" if use_bf16(precision, device) else "fp32"
    if precision != "auto":
        return used
    if os.environ.get("SAC_PRECISION"):
        return f"{used} (auto: $SAC_PRECISION)"
    return f"{used} (auto: {'native' if native_bf16(device) else 'no native'} bf16)"


def autocast_context(device: torch.device, bf16: bool) -> AbstractContextManager[object]:
    """bf16 autocast on the given device when asked, else a no-op."""
    if not bf16:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
