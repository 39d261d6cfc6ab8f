"""Resampling between an input image's scale and the scale a model was trained at."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sac.errors import InputError


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) after resampling by ``scale`` (at least one pixel per side)."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def resample_image(rgb: np.ndarray, scale: float) -> np.ndarray:
    """Float (H, W, C) image resampled by ``scale`` (bilinear, anti-aliased when shrinking)."""
    if scale <= 0:
        raise InputError(f"scale must be > 0; got {scale}")
    if scale == 1.0:
        return rgb
    size = scaled_shape(rgb.shape[:2], scale)
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
        raise InputError("give --scale or --pixel-size, not both")
    if scale is not None:
        if not 0.05 <= scale <= 20:
            raise InputError(f"--scale {scale} is out of the sensible range [0.05, 20]")
        return float(scale)
    if pixel_size is not None:
        if pixel_size <= 0:
            raise InputError(f"--pixel-size must be > 0 micrometres; got {pixel_size}")
        if model_pixel_size is None:
            raise InputError("this model does not record the pixel size it was trained at; "
                             "use --scale instead of --pixel-size")
        return float(pixel_size / model_pixel_size)
    return float(model_scale)
