"""Resampling between an input image's scale and the scale a model was trained at."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sac.core.checks import check_resampled, number
from sac.core.errors import ConfigError

MIN_SCALE, MAX_SCALE = 0.05, 20.0  # resampling factors a user may ask for


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) after resampling by ``scale`` (at least one pixel per side)."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def resample_image(rgb: np.ndarray, scale: float, source: str = "image") -> np.ndarray:
    """Float (H, W, C) image resampled by ``scale`` (bilinear, anti-aliased when shrinking);
    sizes too large to hold are refused before allocation
    (:func:`sac.core.checks.check_resampled`)."""
    number("scale", scale, 0, None, lo_open=True)
    size = scaled_shape(rgb.shape[:2], scale)
    check_resampled(rgb.shape, size, scale, source)
    if scale == 1.0:
        return rgb
    x = torch.from_numpy(np.ascontiguousarray(rgb, np.float32)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=scale < 1)
    return x[0].permute(1, 2, 0).contiguous().numpy()


def resample_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Label image resized to ``shape`` by nearest neighbour (pixel centres), ids unchanged."""
    h, w = labels.shape
    if (h, w) == tuple(shape):
        return labels
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]]


def input_scale(model_scale: float, model_pixel_size: float | None,
                scale: float | None = None, pixel_size: float | None = None) -> float:
    """The resampling factor for an input image.

    ``scale`` wins when given; else ``pixel_size`` (micrometres per input pixel) against the
    model's ``model_pixel_size`` (needs the model to know it); else the model's own factor for
    images at its training data's scale.
    """
    if scale is not None and pixel_size is not None:
        raise ConfigError("give --scale or --pixel-size, not both")
    if scale is not None:
        return float(number("--scale", scale, MIN_SCALE, MAX_SCALE))
    if pixel_size is not None:
        number("--pixel-size", pixel_size, 0, 100, lo_open=True)
        if model_pixel_size is None:
            raise ConfigError("this model does not record the pixel size it was trained at; "
                              "use --scale instead of --pixel-size")
        factor = float(pixel_size / model_pixel_size)
        if not MIN_SCALE <= factor <= MAX_SCALE:
            raise ConfigError(f"--pixel-size {pixel_size:g} um against the model's "
                              f"{model_pixel_size:g} um means resampling by {factor:.3g}, "
                              f"outside [{MIN_SCALE:g}, {MAX_SCALE:g}]; check the pixel size")
        return factor
    return float(model_scale)
