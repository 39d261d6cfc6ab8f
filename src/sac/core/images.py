"""Validating in-memory images and converting them: every image conversion SAC does is here.

Three conversions, for three uses:

- :func:`to_rgb_float`, for the models: float32 (H, W, 3) in [0, 1], min-max scaled;
- :func:`to_rgb_uint8`, for datasets and display: RGB uint8, uint8 data kept as it is;
- :func:`scale_with_range`, for whole slides: uint8 with one fixed intensity range for every
  region, so that regions of one slide match.

:func:`to_rgb_float`: every image becomes float32 (H, W, 3) in [0, 1]:
- gray (H, W) or (H, W, 1) is repeated to three channels; gray+alpha (H, W, 2) keeps the gray
  channel and RGBA drops alpha (alpha is not composited);
- integer and float data are min-max scaled over the whole image (all channels together), the
  normalisation LiteMedSAM was trained with; a constant image becomes all zeros.
Scaling the whole image once (not per tile) keeps tiles of one image consistent.
"""

from __future__ import annotations

import numpy as np

from sac.core.errors import InputError

SUPPORTED = ("2-D (H, W) gray, or 3-D (H, W, C) with C = 1 (gray), 2 (gray+alpha), 3 (RGB) or "
             "4 (RGBA)")


def supported_shape(shape: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` is an image SAC reads (see :data:`SUPPORTED`)."""
    return len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 2, 3, 4))


def check_image(image: np.ndarray, source: str = "image") -> None:
    """Raise :class:`InputError` if ``image`` has an unsupported shape, dtype or content."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{source}: expected a numpy array, got {type(image).__name__}")
    if not supported_shape(image.shape):
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
    # float64 for the scaling: float32 overflows on data near its range (x 1e38, or spanning
    # -3e38..3e38, where hi - lo is infinite) and float64 data may lie beyond it altogether
    wide = image.astype(np.float64) if image.dtype.itemsize >= 4 else image.astype(np.float32)
    lo, hi = float(wide.min()), float(wide.max())
    if not hi > lo:
        return np.zeros(image.shape, np.float32)
    out = ((wide - lo) / (hi - lo)).astype(np.float32)
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


DARK_BACKGROUND = 100.0  # median gray level (0..255) below which the background counts as dark
GRAY_COLOUR = 5.0  # mean channel spread (0..255) below which an image counts as gray
# a dense, dark stained tile (MoNuSeg's TCGA-NH-A8F7: median 98, spread 51) is not
# fluorescence: stained colour over a dim, not black, background (DSB fluorescence: <= 26)
STAINED_COLOUR = 20.0
DIM_BACKGROUND = 50.0
IMAGE_TYPES = ("fluorescence", "brightfield", "histology")


def image_type(image: np.ndarray, source: str = "image") -> str:
    """One of :data:`IMAGE_TYPES`, from the RGB uint8 version of ``image``: a dark median
    background (gray level < :data:`DARK_BACKGROUND`) is fluorescence, unless it is only dim
    (>= :data:`DIM_BACKGROUND`) and stained (channel spread >= :data:`STAINED_COLOUR`): a
    dense H&E tile; a light one is
    brightfield when gray (mean channel spread < :data:`GRAY_COLOUR`), else stained
    histology (H&E, IHC). On DSB 2018 stage 1 this gives 546 / 16 / 108 images with a wide
    margin around both thresholds (the types of its built-in split)."""
    rgb = to_rgb_uint8(image, source).astype(np.int16)
    background = float(np.median(rgb.mean(axis=2)))
    colour = float((rgb.max(axis=2) - rgb.min(axis=2)).mean())
    if background < DARK_BACKGROUND and not (background >= DIM_BACKGROUND
                                             and colour >= STAINED_COLOUR):
        return "fluorescence"
    return "brightfield" if colour < GRAY_COLOUR else "histology"


def to_rgb_uint8(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Convert an image array to RGB uint8 (H, W, 3) following the module-docstring rules.

    ``source`` (e.g. the file name) is used in error messages.
    """
    arr = np.asarray(image)
    if not supported_shape(arr.shape):
        raise InputError(f"{source}: unsupported image shape {arr.shape}; expected {SUPPORTED}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 2:  # gray + alpha
        arr = arr[..., :1]
    elif arr.shape[2] == 4:  # RGBA
        arr = arr[..., :3]
    arr = _scale_to_uint8(arr, source)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


def _scale_to_uint8(arr: np.ndarray, source: str) -> np.ndarray:
    """Intensity part of :func:`to_rgb_uint8`: keep uint8, scale everything else to 0..255."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * np.uint8(255)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(
            f"{source}: unsupported pixel type {arr.dtype}; expected integers (e.g. uint8, "
            "uint16) or floats"
        )
    if arr.size == 0:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError(f"{source}: image contains NaN or infinite values; fix the file")
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0.0 and hi <= 1.0:
            return np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    scaled = (arr.astype(np.float64) - lo) * 255.0 / (hi - lo)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def scale_with_range(arr: np.ndarray, value_range: tuple[float, float],
                     source: str = "slide") -> np.ndarray:
    """uint8 from non-uint8 data with a fixed (min, max), by the rules of ``to_rgb_uint8``.

    bool -> 0/255; floats with the range inside [0, 1] -> x 255; otherwise linear from
    [min, max] to 0..255 with clipping; a constant range gives zeros.
    """
    if arr.dtype == bool:
        return arr.astype(np.uint8) * np.uint8(255)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{source}: unsupported pixel type {arr.dtype}; expected integers or "
                         "floats")
    lo, hi = value_range
    data = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return np.clip(np.rint(data * 255.0), 0, 255).astype(np.uint8)
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.clip(np.rint((data - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)
