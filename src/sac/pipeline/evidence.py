"""Nothing from nothing: nuclei need contrast in the image itself, above its noise.

The networks see images min-max scaled to [0, 1], which stretches a blank, constant or pure
noise image to full contrast, and the prompt generator then finds "nuclei" in it. So the
evidence is checked on the image's own intensities (the mean of its channels, before any
scaling), against the noise level estimated from neighbouring-pixel differences:

- an image (or slide chunk) whose intensity range (after a 3x3 mean, so that single hot
  pixels do not count, while one small nucleus does) is below :data:`MIN_IMAGE_SNR` times
  its noise has no structure and gives no nuclei, at no cost;
- each nucleus found must vary in intensity over itself and a thin ring around it (other
  nuclei left out) by at least :data:`MIN_NUCLEUS_SNR` times the noise, so a flat or noisy
  region of an otherwise real image gives no nuclei either.

Smoothed pure noise spans about 3 to 4 noise standard deviations; every MoNuSeg and DSB 2018
training image is above 17 (``benchmarks/evidence.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sac.core.labels import keep_ids

MIN_IMAGE_SNR = 8.0
MIN_NUCLEUS_SNR = 2.5
RING = 3  # px around a nucleus (at the labels' resolution) in its contrast check


@dataclass(frozen=True)
class Evidence:
    """The image's grey intensities, their noise level and contrast-to-noise ratio."""

    grey: np.ndarray  # float32 (H, W), the image's own units
    noise: float  # robust standard deviation of the noise, same units
    snr: float  # intensity range / noise

    @property
    def has_structure(self) -> bool:
        return self.snr >= MIN_IMAGE_SNR

    def describe(self) -> str:
        return (f"no structure in the image (intensity range {self.snr:.1f}x its noise, "
                f"below {MIN_IMAGE_SNR:g}x): no nuclei")


def image_evidence(image: np.ndarray) -> Evidence:
    """The evidence of a raw (H, W) or (H, W, C) image, in its own intensity units."""
    grey = image.astype(np.float32)
    if grey.ndim == 3:  # colour planes only: gray(+alpha) -> plane 0, RGB(A) -> mean of RGB
        grey = grey[..., 0] if grey.shape[2] < 3 else grey[..., :3].mean(axis=2)
    # at least half a grey level, the quantisation noise (floats: of 8-bit data over [0, 1],
    # the usual origin, and in proportion above that)
    floor = 0.5 if np.issubdtype(image.dtype, np.integer) else 0.5 / 255 * max(
        1.0, float(np.abs(grey).max()))
    noise = max(_noise_sigma(grey), floor)
    smooth = ndimage.uniform_filter(grey, 3, mode="nearest")  # one hot pixel is not a nucleus
    return Evidence(grey, noise, float(smooth.max() - smooth.min()) / noise)


def _noise_sigma(grey: np.ndarray) -> float:
    """Noise standard deviation from the median absolute difference of neighbouring pixels
    (robust to edges, which are few: for i.i.d. noise, median |d| = 0.6745 * sqrt(2) sigma)."""
    diffs = [np.abs(np.diff(grey, axis=a)).ravel() for a in (0, 1) if grey.shape[a] > 1]
    if not diffs:
        return 0.0
    return float(np.median(np.concatenate(diffs))) / (0.6745 * np.sqrt(2.0))


def drop_flat_nuclei(labels: np.ndarray, evidence: Evidence) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` without the nuclei whose region (with a ring of :data:`RING` px, other
    nuclei left out) varies in intensity by less than :data:`MIN_NUCLEUS_SNR` x the noise,
    renumbered 1..n in their old order, and the old id of each new one (``kept[i]`` is the
    old id of new id ``i + 1``). ``labels`` must have the evidence's shape."""
    n = int(labels.max())
    if n == 0:
        return labels, np.arange(1, 1)
    grown = ndimage.grey_dilation(labels, size=2 * RING + 1)
    region = np.where(labels > 0, labels, grown)
    std = _region_std(evidence.grey, region, n)[1:]
    return keep_ids(labels, std >= MIN_NUCLEUS_SNR * evidence.noise)  # no pixels: std 0


def _region_std(grey: np.ndarray, region: np.ndarray, n: int) -> np.ndarray:
    """Standard deviation of ``grey`` over each id 0..n of ``region`` (0 where an id has no
    pixels; scipy's ``ndimage.variance`` warns then, and for an absent background too)."""
    flat, values = region.ravel(), grey.ravel().astype(np.float64)
    counts = np.bincount(flat, minlength=n + 1)[: n + 1]
    sums = np.bincount(flat, values, minlength=n + 1)[: n + 1]
    means = np.divide(sums, counts, out=np.zeros(n + 1), where=counts > 0)
    dev = values - means[flat]
    var = np.bincount(flat, dev * dev, minlength=n + 1)[: n + 1]
    return np.sqrt(np.divide(var, counts, out=np.zeros(n + 1), where=counts > 0))
