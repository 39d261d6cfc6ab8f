"""Torch devices: checking a device name, and bf16 autocast where asked."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

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


def autocast_context(device: torch.device, bf16: bool) -> AbstractContextManager[object]:
    """bf16 autocast on the given device when asked, else a no-op."""
    if not bf16:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
