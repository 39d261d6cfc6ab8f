"""Tissue detection on a slide thumbnail, so tiles of empty glass can be skipped.

Made for brightfield stains (H&E, IHC) on a light background. A thumbnail pixel is tissue when
it is **coloured** or **dark**:

- coloured: HSV saturation ((max - min) / max of R, G, B) above Otsu's threshold on the
  thumbnail's saturation, but never below ``min_saturation`` (so that a blank slide, whose
  saturation is only noise, yields no tissue). Eosin-pink and hematoxylin-purple tissue is
  saturated, glass and the scanner's white fill are not;
- dark: gray value below Otsu's threshold on the gray image, but never above ``max_gray``,
  which catches weakly stained, grayish tissue.

Near-black pixels (gray below ``black_level``: the black fill some scanners put around the
scanned area) are never tissue.

The mask is then cleaned: closing with a small disk, objects smaller than
``min_area_fraction`` of the thumbnail dropped, holes smaller than that filled.

**Fluorescence and other dark-background slides** are misjudged (their background is dark,
their signal often gray): do not use this mask for them; process every tile instead.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from sac.core.errors import InputError

if TYPE_CHECKING:
    from sac.slides.reader import SlideReader


def tissue_mask(
    thumbnail_rgb: np.ndarray,
    min_area_fraction: float = 0.0005,
    min_saturation: float = 0.07,
    max_gray: float = 200.0,
    black_level: float = 15.0,
    closing_radius: int = 2,
) -> np.ndarray:
    """Boolean tissue mask (True = tissue) of an RGB uint8 thumbnail; see the module docstring."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.morphology import disk

    rgb = np.asarray(thumbnail_rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"tissue mask needs an RGB uint8 thumbnail (H, W, 3); got shape "
                         f"{rgb.shape} and dtype {rgb.dtype}")
    rgb = rgb.astype(np.float32)
    hi, lo = rgb.max(axis=2), rgb.min(axis=2)
    saturation = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1.0), 0.0)
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)

    def otsu(values: np.ndarray, default: float) -> float:
        return float(threshold_otsu(values)) if np.ptp(values) > 0 else default

    coloured = saturation > max(otsu(saturation, 1.0), min_saturation)
    dark = gray < min(otsu(gray, 0.0), max_gray)
    mask = (coloured | dark) & (gray >= black_level)
    if closing_radius > 0:
        mask = ndi.binary_closing(mask, structure=disk(closing_radius), border_value=0)
    min_pixels = max(1, math.ceil(min_area_fraction * mask.size))
    mask = _drop_small(mask, min_pixels)
    return ~_drop_small(~mask, min_pixels, keep_border=True)


def _drop_small(mask: np.ndarray, min_pixels: int, keep_border: bool = False) -> np.ndarray:
    """Remove 8-connected components below ``min_pixels`` (optionally keeping those touching
    the border: for holes, the background around the tissue)."""
    from scipy import ndimage as ndi

    labels, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return mask
    keep = np.bincount(labels.ravel(), minlength=n + 1) >= min_pixels
    if keep_border:
        edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        keep[edge] = True
    keep[0] = False
    return keep[labels]


def tile_has_tissue(
    mask: np.ndarray,
    mask_downsample: float | tuple[float, float],
    x: int,
    y: int,
    w: int,
    h: int,
    min_fraction: float = 0.0,
) -> bool:
    """Whether the level-0 box (x, y, w, h) holds tissue in ``mask``.

    ``mask_downsample`` is level-0 pixels per mask pixel, one number or (x, y) (e.g. the slide
    width over the thumbnail width, and the same for heights). True when at least one mask
    pixel the box touches is tissue and tissue covers at least ``min_fraction`` of the box
    (parts of the box outside the slide count as no tissue).
    """
    if isinstance(mask_downsample, (tuple, list)):
        dx, dy = (float(v) for v in mask_downsample)
    else:
        dx = dy = float(mask_downsample)
    if dx <= 0 or dy <= 0 or w < 1 or h < 1:
        raise ValueError(f"need positive downsample and box size; got {mask_downsample}, "
                         f"w={w}, h={h}")
    mh, mw = mask.shape
    x0, x1 = math.floor(x / dx), math.ceil((x + w) / dx)
    y0, y1 = math.floor(y / dy), math.ceil((y + h) / dy)
    area = (x1 - x0) * (y1 - y0)
    inside = mask[max(y0, 0):min(y1, mh), max(x0, 0):min(x1, mw)]
    count = int(np.count_nonzero(inside))
    return count > 0 and count >= min_fraction * area


def slide_tissue_mask(
    slide: SlideReader, max_size: int = 2048, **options: Any
) -> tuple[np.ndarray, tuple[float, float]]:
    """Tissue mask of a slide's thumbnail and its (x, y) downsample for :func:`tile_has_tissue`.

    ``options`` go to :func:`tissue_mask`.
    """
    thumb = slide.thumbnail(max_size)
    w0, h0 = slide.dimensions
    return tissue_mask(thumb, **options), (w0 / thumb.shape[1], h0 / thumb.shape[0])
