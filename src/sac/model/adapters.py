"""Saving and loading LoRA adapters on their own, as safetensors files."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from sac.core.errors import WeightsError
from sac.core.fileio import atomic_path
from sac.modeling.lora import load_lora_state_dict, lora_state_dict


def save_lora(model: nn.Module, path: str | Path, overwrite: bool = False) -> Path:
    """Write the model's LoRA tensors (only those) to a safetensors file; returns the path."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in lora_state_dict(model).items()}
    if not state:
        raise WeightsError("the model carries no LoRA adapters to save")
    path = Path(path)
    with atomic_path(path, overwrite) as tmp:
        save_file(state, str(tmp), metadata={"format": "sac-lora"})
    return path


def load_lora(model: nn.Module, path: str | Path) -> None:
    """Load adapters written by :func:`save_lora` into a model with matching LoRA layout."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"LoRA file {path} does not exist")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"could not read LoRA file {path}: {exc}") from None
    try:
        load_lora_state_dict(model, state)
    except ValueError as exc:
        raise WeightsError(f"{path}: {exc}") from None
