"""Resuming a run: what changed between the settings it was started with and today's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sac.core.errors import InputError, WeightsError
from sac.sam.weights import holds_pickle


def damaged_advice(path: Path) -> str:
    """What to do about a damaged training state."""
    return (f"; delete {path.parent} and resume from an earlier copy, or start the run again "
            "with --overwrite")


def read_state(path: Path) -> dict[str, Any]:
    """A run's ``state.pt``, read without unpickling objects; a pickled one is refused as
    such (exit 3), a damaged one named with what to do (exit 2)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged or hostile files
        if holds_pickle(path, exc):
            raise WeightsError(f"cannot resume from {path}: it holds pickled Python objects, "
                               "which SAC never unpickles (they can run code)") from None
        why = "empty (0 bytes)" if path.stat().st_size == 0 else \
            "not a checkpoint SAC wrote (corrupt or truncated)"
        raise InputError(f"cannot resume from {path}: {why}{damaged_advice(path)}") from None
    if not isinstance(state, dict):
        raise InputError(f"cannot resume from {path}: not a SAC training state"
                         f"{damaged_advice(path)}")
    return state


def setting_changes(before: Any, now: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two settings documents (``before -> now``).
    A key only ``now`` has, holding an empty or off value (a field a later SAC version added
    with a default that keeps the old behaviour: ``{}``, ``0``, ``False``), is no change."""
    if isinstance(before, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(before) | set(now)):
            key = f"{prefix}{k}"
            if k not in before and (now[k] is None or now[k] in ({}, [], "", 0, False)):
                continue
            if k not in before or k not in now:
                out.append(key)
            else:
                out += setting_changes(before[k], now[k], f"{key}.")
        return out
    return [] if before == now else [f"{prefix.rstrip('.')} ({before!r} -> {now!r})"]
