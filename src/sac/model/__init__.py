"""Trained SAC models: the config, the in-memory model and the model-folder format."""

from sac.model.build import SACModel, build_model
from sac.model.config import BaseWeights, PromptConfig, SACConfig, Thresholds
from sac.model.store import (
    create_model,
    load_for_training,
    load_model,
    read_config,
    resolve_model,
    save_model,
    shipped_models,
)

__all__ = [
    "BaseWeights",
    "PromptConfig",
    "SACConfig",
    "SACModel",
    "Thresholds",
    "build_model",
    "create_model",
    "load_for_training",
    "load_model",
    "read_config",
    "resolve_model",
    "save_model",
    "shipped_models",
]
