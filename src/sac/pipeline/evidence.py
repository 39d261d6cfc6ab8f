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
  region of an otherwise real image gives no nuclei either;
- each nucleus must stand out from that ring the way nuclei do (:func:`polarity`): in a
  bright-field image (stained or not) its chromatin absorbs more light than its
  surroundings, by :data:`MIN_DARKER` in optical density; in a fluorescence image it emits
  more, by :data:`MIN_BRIGHTER` of the image's intensity range. Fat vacuoles, holes in
  stroma, eosin fibres and bare glass do not, and a model trained on tissue full of nuclei
  outlines them as nuclei (``benchmarks/invented.py``). Which kind of image it is (stained
  histology, unstained bright field, fluorescence) comes from its background and colour
  (:func:`sac.core.images.image_type`). The automatic scale's size reading counts only
  objects that pass (:func:`nucleus_like_mask`).

Smoothed pure noise spans about 3 to 4 noise standard deviations; every MoNuSeg and DSB 2018
training image is above 17 (``benchmarks/evidence.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sac.core.images import image_type
from sac.core.labels import keep_ids

MIN_IMAGE_SNR = 8.0
MIN_NUCLEUS_SNR = 2.5
RING = 3  # px around a nucleus (at the labels' resolution) in its contrast check
#: a bright-field nucleus's least optical-density excess over its ring (see polarity)
MIN_DARKER = 0.05
#: a fluorescence nucleus's least intensity excess over its ring, as a share of the image's
#: intensity range (1st to 99.9th percentile; see polarity)
MIN_BRIGHTER = 0.02
QUARTER = 0.25  # a nucleus's darkest (brightest) quarter is compared with its ring


@dataclass(frozen=True)
class Evidence:
    """The image's grey intensities, their noise level and contrast-to-noise ratio."""

    grey: np.ndarray  # float32 (H, W), the image's own units
    noise: float  # robust standard deviation of the noise, same units
    snr: float  # intensity range / noise
    signal: np.ndarray | None = None  # (H, W) higher on nuclei (nuclear_signal): polarity
    kind: str = "histology"  # the image's type (sac.core.images.image_type)

    @property
    def has_structure(self) -> bool:
        return self.snr >= MIN_IMAGE_SNR

    def describe(self) -> str:
        return (f"no structure in the image (intensity range {self.snr:.1f}x its noise, "
                f"below {MIN_IMAGE_SNR:g}x): no nuclei")


def image_evidence(image: np.ndarray) -> Evidence:
    """The evidence of a raw (H, W) or (H, W, C) image, in its own intensity units."""
    planes = image[..., None] if image.ndim == 2 else image
    # colour planes only: gray(+alpha) -> plane 0, RGB(A) -> mean of RGB
    planes = planes[..., :1] if planes.shape[2] < 3 else planes[..., :3]
    grey = planes.mean(axis=2, dtype=np.float32)
    # at least half a grey level, the quantisation noise (floats: of 8-bit data over [0, 1],
    # the usual origin, and in proportion above that)
    floor = 0.5 if np.issubdtype(image.dtype, np.integer) else 0.5 / 255 * max(
        1.0, float(np.abs(grey).max()))
    noise = max(_noise_sigma(grey), floor)
    smooth = ndimage.uniform_filter(grey, 3, mode="nearest")  # one hot pixel is not a nucleus
    kind = image_kind(image)
    return Evidence(grey, noise, float(smooth.max() - smooth.min()) / noise,
                    nuclear_signal(planes, kind, grey), kind)


def image_kind(image: np.ndarray) -> str:
    """The image's type (:func:`sac.core.images.image_type`), read from every other pixel
    of every other row: a background median and a mean colour do not need them all, and
    the whole image's reading costs a tenth of a second per megapixel."""
    return image_type(image[::2, ::2])


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
    or (where the evidence has its nuclear signal) that do not stand out from the ring the
    way nuclei do (:func:`polarity`), renumbered 1..n in their old order, and the old id of
    each new one (``kept[i]`` is the old id of new id ``i + 1``). ``labels`` must have the
    evidence's shape."""
    n = int(labels.max())
    if n == 0:
        return labels, np.arange(1, 1)
    grown = ndimage.grey_dilation(labels, size=2 * RING + 1)
    region = np.where(labels > 0, labels, grown)
    std = _region_std(evidence.grey, region, n)[1:]
    keep = std >= MIN_NUCLEUS_SNR * evidence.noise  # no pixels: std 0
    if evidence.signal is not None:
        keep &= stands_out(labels, grown, evidence.signal, evidence.kind)
    return keep_ids(labels, keep)


def nucleus_like_mask(mask: np.ndarray, planes: np.ndarray, kind: str) -> np.ndarray:
    """``mask`` without its connected objects that do not stand out from their ring the way
    nuclei do (:func:`polarity`), so that holes, fat and glass do not vote in the automatic
    scale; ``planes``: the (H, W, C) image the mask was read from. In stained histology an
    object passes when it is darker in any colour channel, not only the red one: one lost
    nucleus changes no output, but lost objects change the scale of the whole image (on a
    magenta-stained DSB image nearly saturated in red, the red channel alone left a few
    specks to read, and the image was enlarged 4x where it needed no resampling)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    grown = ndimage.grey_dilation(labels, size=2 * RING + 1)
    if kind == "histology" and planes.ndim == 3 and planes.shape[2] >= 3:
        signals = [nuclear_signal(planes[..., c:c + 1], "brightfield", planes[..., c])
                   for c in range(3)]
        best = np.max([polarity(labels, grown, sig) for sig in signals], axis=0)
        keep = best >= MIN_DARKER
    else:
        grey = planes.mean(axis=2, dtype=np.float32)
        keep = stands_out(labels, grown, nuclear_signal(planes, kind, grey), kind)
    return np.concatenate([[False], keep])[labels]


def stands_out(labels: np.ndarray, grown: np.ndarray, signal: np.ndarray, kind: str
               ) -> np.ndarray:
    """Whether each nucleus 1..n passes the polarity check (:func:`polarity`) in an image
    of type ``kind`` whose :func:`nuclear_signal` is ``signal``."""
    least = MIN_BRIGHTER if kind == "fluorescence" else MIN_DARKER
    return polarity(labels, grown, signal) >= least


def polarity(labels: np.ndarray, grown: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """How much each nucleus 1..n of ``labels`` stands out from its ring (the pixels that
    ``grown``, the labels dilated, adds; other nuclei left out) in the image's
    :func:`nuclear_signal`: its upper quarter over the ring's median, so that a pale
    vesicular nucleus counts by its chromatin. A nucleus without ring pixels (surrounded by
    other nuclei) passes."""
    n = int(labels.max())
    ring = np.where(labels > 0, 0, grown)
    excess = (_quantile(signal, labels, n, 1 - QUARTER)
              - _quantile(signal, ring, n, 0.5))
    return np.where(np.isnan(excess), np.inf, excess)


def nuclear_signal(planes: np.ndarray, kind: str, grey: np.ndarray) -> np.ndarray:
    """Per pixel, what is higher on nuclei in an image of type ``kind`` with colour
    ``planes`` (H, W, C) and their mean ``grey``: in bright field the optical density (up
    to a constant, which comparisons cancel) of the nuclear stain, the red channel of
    stained histology, which hematoxylin and DAB absorb and eosin barely does (Ruifrok and
    Johnston's stain vectors: 0.65, 0.27 and 0.07 of their density in red), the grey level
    otherwise; in fluorescence the grey level over the image's intensity range (1st to
    99.9th percentile)."""
    if kind == "fluorescence":
        lo, hi = np.percentile(grey, (1, 99.9))
        return grey / max(float(hi - lo), 1e-12)
    plane = planes[..., 0].astype(np.float32) if kind == "histology" else grey
    return -np.log(np.maximum(plane, max(float(plane.max()) * 1e-3, 1e-6)))


def _quantile(values: np.ndarray, ids: np.ndarray, n: int, q: float) -> np.ndarray:
    """The ``q`` quantile (nearest rank) of ``values`` over each id 1..n of ``ids`` (NaN
    where an id has no pixels). One sort of a key that orders by id, then by value (half the
    time of a two-key lexsort)."""
    inside = ids > 0
    v, i = values[inside].astype(np.float64), ids[inside].astype(np.float64)
    if v.size == 0:
        return np.full(n, np.nan)
    lo = float(v.min())
    span = float(v.max()) - lo + 1.0  # each id's values lie in [id * span, id * span + span)
    key = np.sort(i * span + (v - lo))
    counts = np.bincount(ids[inside], minlength=n + 1)[1: n + 1]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full(n, np.nan)
    has = counts > 0
    picked = key[starts[has] + np.rint(q * (counts[has] - 1)).astype(np.int64)]
    out[has] = picked - np.flatnonzero(has).astype(np.float64) * span - span + lo
    return out


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
