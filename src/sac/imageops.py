"""Validating in-memory images and converting them to the one float layout the models use.

Every image becomes float32 (H, W, 3) in [0, 1]:
- gray (H, W) or (H, W, 1) is repeated to three channels; gray+alpha (H, W, 2) keeps the gray
  channel and RGBA drops alpha (alpha is not composited);
- integer and float data are min-max scaled over the whole image (all channels together), the
  normalisation LiteMedSAM was trained with; a constant image becomes all zeros.
Scaling the whole image once (not per tile) keeps tiles of one image consistent.
"""

from __future__ import annotations

import numpy as np

from sac.errors import InputError

SUPPORTED = ("2-D (H, W) gray, or 3-D (H, W, C) with C = 1 (gray), 2 (gray+alpha), 3 (RGB) or "
             "4 (RGBA)")


def check_image(image: np.ndarray, source: str = "image") -> None:
    """Raise :class:`InputError` if ``image`` has an unsupported shape, dtype or content."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{source}: expected a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise InputError(
            f"{source}: unsupported image shape {image.shape}; expected {SUPPORTED}. "
            "For stacks or multi-channel files pick one plane or channel first (sac segment "
            "--channel N)"
        )
    if min(image.shape[:2]) < 1:
        raise InputError(f"{source}: image is empty (shape {image.shape})")
    if image.dtype == bool or not (np.issubdtype(image.dtype, np.integer)
                                   or np.issubdtype(image.dtype, np.floating)):
        raise InputError(
            f"{source}: unsupported pixel type {image.dtype}; expected unsigned/signed integers "
            "(e.g. uint8, uint16) or floats"
        )
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise InputError(f"{source}: image contains NaN or infinite values")


def to_rgb_float(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Validate and convert to float32 (H, W, 3) in [0, 1] (see module docstring)."""
    check_image(image, source)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 4:
        image = image[..., :3]
    elif image.shape[2] == 2:  # gray + alpha
        image = image[..., :1]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    out = image.astype(np.float32)
    lo, hi = float(out.min()), float(out.max())
    out = (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
    return np.ascontiguousarray(out)


def as_model_rgb(image: np.ndarray, source: str = "image", normalized: bool = False
                 ) -> np.ndarray:
    """:func:`to_rgb_float` of ``image``, or, with ``normalized=True``, a float32 (H, W, 3)
    image already in [0, 1] taken as is (a tile or region of an image scaled as a whole)."""
    if not normalized:
        return to_rgb_float(image, source)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.float32:
        raise InputError(f"{source}: normalized input must be float32 (H, W, 3)")
    return image
