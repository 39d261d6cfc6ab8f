"""Appearance augmentations for models that must hold up on images unlike their training data.

Users' images differ from a training set in ways the basic augmentation (:mod:`.augment`) does
not cover: grey scans of stained slides, brightfield images whose nuclei are darker than the
background instead of brighter, lossy JPEG export, and another magnification. Each function
here changes only the image (labels follow geometry alone), float32 (H, W, C) in [0, 1].
"""

from __future__ import annotations

import numpy as np

from sac.core.resample import resample_image, resample_labels

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601


def to_grey(image: np.ndarray) -> np.ndarray:
    """The image's luminance in every channel (a colour image scanned or exported as grey)."""
    if image.shape[2] != 3:
        return np.repeat(image.mean(axis=2, keepdims=True), image.shape[2], axis=2)
    grey = image.astype(np.float32) @ LUMA
    return np.repeat(grey[..., None], 3, axis=2)


def invert(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Inverted contrast, 1 - x, on the real pixels (padding stays 0): bright nuclei on dark
    background become dark nuclei on bright background, and back."""
    out = 1.0 - image.astype(np.float32)
    if valid is not None:
        out[~valid] = 0.0
    return out


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after saving as JPEG at ``quality`` (1-100) and reading back."""
    import imagecodecs

    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100]; got {quality}")
    u8 = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    grey = image.shape[2] == 1
    data = imagecodecs.jpeg8_encode(u8[..., 0] if grey else u8, level=int(quality))
    back = imagecodecs.jpeg8_decode(data).astype(np.float32) / 255
    return back[..., None] if back.ndim == 2 else back


def rescaled_crop(image: np.ndarray, labels: np.ndarray, valid: np.ndarray, size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A crop of any side resampled to ``size`` x ``size``: the image bilinearly, labels and
    ``valid`` by nearest neighbour (ids unchanged). Nuclei grow by ``size / side``."""
    side = labels.shape[0]
    if side == size:
        return image, labels, valid
    rgb = resample_image(image, size / side)  # round(side * size / side) == size
    lab = resample_labels(labels, (size, size))
    val = resample_labels(valid.astype(np.uint8), (size, size)).astype(bool)
    rgb = rgb.astype(np.float32)
    rgb[~val] = 0.0
    return rgb, lab, val
