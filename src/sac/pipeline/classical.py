"""Classical nucleus segmentation: threshold a nucleus channel, split touching nuclei by a
distance-transform watershed. Used for zero-shot box prompts and as an honest baseline."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def dark_background(rgb: np.ndarray) -> bool:
    """Whether ``rgb`` (float, [0, 1]) looks like fluorescence: nuclei bright on a dark field.

    A median gray level under 0.25 is dark; over 0.5 it is a brightfield stain. In between,
    dense stained tissue (H&E sections packed with nuclei have medians near 0.4) is told from
    fluorescence by colour: stains are coloured, while fluorescence stored as RGB is gray.
    """
    gray = rgb.mean(axis=2)
    median = float(np.median(gray))
    if median < 0.25 or median >= 0.5:
        return median < 0.25
    return float(np.median(rgb.max(axis=2) - rgb.min(axis=2))) < 0.02


def nucleus_channel(rgb: np.ndarray, modality: str | None = None) -> tuple[np.ndarray, str]:
    """A [0, 1] map in which nuclei are bright, and the image type it used.

    ``modality`` is "fluorescence" (mean intensity), "brightfield" (hematoxylin optical
    density from colour deconvolution, skimage's ``rgb2hed``) or None to decide with
    :func:`dark_background`.
    """
    from skimage.color import rgb2hed

    if modality not in (None, "fluorescence", "brightfield"):
        raise ValueError(f"modality must be 'fluorescence', 'brightfield' or None, "
                         f"not {modality!r}")
    if modality is None:
        modality = "fluorescence" if dark_background(rgb) else "brightfield"
    if modality == "fluorescence":
        return rgb.mean(axis=2).astype(np.float32), modality
    hema = rgb2hed(np.clip(rgb, 0, 1))[..., 0]
    lo, hi = np.percentile(hema, (1, 99.8))
    return np.clip((hema - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32), modality


def classical_instances(
    rgb: np.ndarray, min_area: int = 20, min_distance: int = 4, sigma: float = 1.0,
    modality: str | None = None,
) -> np.ndarray:
    """Instance labels (uint32) from Otsu thresholding plus distance-transform watershed.

    ``rgb`` is float (H, W, 3) in [0, 1]. ``min_distance`` (pixels) separates seeds; nuclei
    smaller than ``min_area`` pixels are dropped. ``modality``: see :func:`nucleus_channel`.
    """
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    channel, _ = nucleus_channel(rgb, modality)
    smooth = gaussian(channel, sigma=sigma)
    if float(smooth.max() - smooth.min()) < 1e-6:
        return np.zeros(channel.shape, dtype=np.uint32)
    fg = smooth > threshold_otsu(smooth)
    fg = ndi.binary_fill_holes(drop_small(ndi.label(fg)[0], min_area) > 0)
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(fg), 1.0)
    comps, _ = ndi.label(fg)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=comps, exclude_border=False)
    markers = np.zeros(fg.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=fg)
    return drop_small(labels, min_area).astype(np.uint32)


def drop_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Set labels with fewer than ``min_area`` pixels to background."""
    sizes = np.bincount(labels.ravel())
    small = sizes < min_area
    small[0] = False
    return np.where(small[labels], 0, labels)


def boxes_from_labels(labels: np.ndarray, pad: float = 0.1, min_pad: int = 2) -> np.ndarray:
    """(N, 4) boxes ``x0, y0, x1, y1`` around each label, grown by ``pad`` of their size."""
    objs = [s for s in ndi.find_objects(labels) if s is not None]
    out = np.zeros((len(objs), 4), dtype=np.float32)
    for i, (ys, xs) in enumerate(objs):
        py = max(min_pad, pad * (ys.stop - ys.start))
        px = max(min_pad, pad * (xs.stop - xs.start))
        out[i] = (xs.start - px, ys.start - py, xs.stop - 1 + px, ys.stop - 1 + py)
    return out
