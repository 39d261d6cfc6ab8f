"""Nucleus size: estimate it per image, and choose the scale that matches the model's training.

A model sees nuclei of the size it was trained on best: larger ones get cut into pieces,
smaller ones missed or merged. The model's config stores the median nucleus diameter of its
training data at the model's input (``nucleus_diameter``). For an image of unknown
magnification, the generator's foreground map gives the size of the nuclei in it; the image is
then resampled so that the two agree.

The size statistic: for each connected foreground object (its holes filled), twice its
largest inscribed radius (the maximum of the distance transform), so touching nuclei that
merge into one object still give about one nucleus's width. An image's estimate is the median
over the predicted objects at least 3 px across (smaller ones are specks, not nuclei the
model could segment), each weighted by its diameter, so that a big nucleus the foreground map
breaks into specks is not outvoted by them; the training data's size is the same statistic
over its labelled objects. On the built-in validation images this lands within 1.5x of the
truth's median for 98 of 100 DSB images (worst 1.7x) and all 6 MoNuSeg images (worst 1.3x);
the plain median: 93 of 100 (worst 20x). (Measured before the holes were filled;
``benchmarks/size_reading.py`` compares the two.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

MIN_OBJECTS = 3  # fewer foreground objects give no estimate (the model's own scale is used)
MIN_AREA = 4  # px; smaller objects are noise, not nuclei
MIN_DIAMETER = 3.0  # px at the model's input; smaller predicted objects are not counted
# nuclei up to this factor larger than the model's median size are left as they are, and up
# to UPSCALE_BELOW smaller where the model records no training-size range (see next_scale)
UPSCALE_BELOW = 1.8
DOWNSCALE_ABOVE = 1.6
FREE_UPSCALE_BELOW = 1.2  # the tighter lower end when enlarging upsamples nothing
SCALE_RANGE = (0.05, 8.0)  # automatic scales are clipped to this range
MAX_ROUNDS = 3  # estimate, resample, estimate again: at most this many generator passes
# the mask's statistic saturates toward the model's size: within this factor below it, it
# cannot tell small nuclei from clumps of tiny ones, and the size head decides (see reading)
MASK_SATURATES = 1.3
# the size head's readings beyond this factor outside the sizes it was fitted on are dropped
HEAD_SLACK = 1.5
# a reading may resample the image only with this much evidence (SizeEvidence.weakness)
MIN_CONFIDENT = 5
MIN_SOLIDITY = 0.7
MAX_DISAGREEMENT = 2.0
# the head's ridge regression shrinks toward its training mean, so on regular objects (like
# disks 80 px across) a disagreement is the head's error; it counts only on irregular ones
REGULAR_SOLIDITY = 0.9
REGULAR_SPREAD = 4.0
#: how far the automatic scale may move from the model's own, per modality (down, up): H&E
#: is scanned at 10x-60x (a model at 40x: 1/2 to 4x), fluorescence at any magnification
PLAUSIBLE_FACTORS = {"he": (0.5, 4.0), "fluorescence": (1 / 6, 4.0), "any": (1 / 6, 4.0)}


@dataclass(frozen=True)
class SizeEstimate:
    """How an image's scale was chosen.

    ``diameter``: median nucleus diameter in input pixels (``None`` without an estimate);
    ``objects``: foreground objects it rests on; ``scale``: the resampling factor used;
    ``source``: ``"estimated"``, ``"diameter"`` (given by the user), ``"scale"`` or
    ``"pixel size"`` (given), or ``"model"`` (the model's own factor); ``note`` says why an
    estimate was not used, when it was not.
    """

    diameter: float | None
    objects: int
    scale: float
    source: str
    note: str = ""

    def describe(self) -> str:
        """One line for summaries."""
        d = "" if self.diameter is None else f"nuclei ~{self.diameter:.1f} px across, "
        extra = f" ({self.note})" if self.note else ""
        return f"{d}scale {self.scale:.3g} ({self.source}){extra}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready record for output metadata."""
        return {"diameter_px": None if self.diameter is None else round(self.diameter, 2),
                "objects": self.objects, "scale": round(self.scale, 5), "source": self.source,
                "note": self.note}


@dataclass(frozen=True)
class SizeEvidence:
    """What a size reading rests on: the foreground objects counted (at least
    :data:`MIN_DIAMETER` across), their diameter-weighted median solidity (area over convex
    hull area: nuclei are near convex, fibres, membranes and torn tissue are not), the spread
    of their diameters (90th over 10th percentile; it marks objects as irregular, not weak by
    itself: large nuclei the generator breaks into pieces spread 29x and read right), and
    how far the size head's reading is
    from the mask's (a ratio >= 1; ``None`` without a head). Thresholds: measured on the
    first round of ``sac-lite-dsb2018`` and ``sac-lite-monuseg`` over their validation
    images, their sparsest windows and the synthetic negatives of ``benchmarks/invented.py``
    (``benchmarks/size_evidence.py``)."""

    objects: int
    solidity: float
    spread: float
    disagreement: float | None = None

    def weakness(self) -> str:
        """Why the reading is too weak to resample by ("" when it is not)."""
        why = []
        if self.objects < MIN_CONFIDENT:
            why.append(f"{self.objects} nucleus-like objects (at least {MIN_CONFIDENT} needed)")
        if self.solidity < MIN_SOLIDITY:
            why.append(f"objects unlike nuclei (solidity {self.solidity:.2f} < {MIN_SOLIDITY})")
        irregular = self.solidity < REGULAR_SOLIDITY or self.spread > REGULAR_SPREAD
        if irregular and self.disagreement is not None and \
                self.disagreement > MAX_DISAGREEMENT:
            why.append(f"size head and map disagree {self.disagreement:.1f}x on irregular "
                       "objects")
        return "; ".join(why)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready record."""
        return {"objects": self.objects, "solidity": round(self.solidity, 3),
                "spread": round(self.spread, 2),
                "disagreement": None if self.disagreement is None else
                round(self.disagreement, 2)}


def size_evidence(mask: np.ndarray, head: float | None = None, read: float | None = None,
                  most: int = 300) -> SizeEvidence:
    """:class:`SizeEvidence` of a foreground ``mask`` (holes filled, as measured); solidity
    over the ``most`` largest objects (the weighted median is theirs), ``head`` and ``read``
    the size head's and the mask's diameters at this scale."""
    from skimage.measure import regionprops

    lab, n = ndi.label(ndi.binary_fill_holes(mask))
    if n == 0:
        return SizeEvidence(0, 0.0, 1.0, None)
    dist = ndi.distance_transform_edt(lab > 0)
    d = 2.0 * np.asarray(ndi.maximum(dist, lab, np.arange(1, n + 1)), np.float64)
    areas = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    keep = np.flatnonzero((areas >= MIN_AREA) & (d >= MIN_DIAMETER))
    if keep.size == 0:
        return SizeEvidence(0, 0.0, 1.0, None)
    dk = d[keep]
    top = keep[np.argsort(dk)[::-1][:most]]
    wanted = set((top + 1).tolist())
    props = {p.label: p.solidity for p in regionprops(lab) if p.label in wanted}
    sol = np.array([props[i + 1] for i in top], np.float64)
    solidity = weighted_median_by(sol, d[top])
    spread = float(np.percentile(dk, 90) / max(np.percentile(dk, 10), 1e-6))
    dis = None
    if head is not None and read is not None and head > 0 and read > 0:
        dis = float(max(head / read, read / head))
    return SizeEvidence(int(keep.size), float(solidity), spread, dis)


def weighted_median_by(values: np.ndarray, weights: np.ndarray) -> float:
    """Median of ``values`` with each weighted by ``weights``."""
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2)])


def object_diameters(mask: np.ndarray, min_area: int = MIN_AREA) -> np.ndarray:
    """Twice the largest inscribed radius of each connected object of a boolean mask."""
    lab, n = ndi.label(mask)
    if n == 0:
        return np.zeros(0, np.float64)
    areas = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    dist = ndi.distance_transform_edt(lab > 0)
    radius = ndi.maximum(dist, lab, np.arange(1, n + 1))
    return 2.0 * np.asarray(radius, np.float64)[areas >= min_area]


def label_diameters(labels: np.ndarray) -> np.ndarray:
    """:func:`object_diameters` of a label image's foreground (for training data)."""
    return object_diameters(np.asarray(labels) > 0)


def median_diameter(mask: np.ndarray, fill_holes: bool = True) -> tuple[float | None, int]:
    """Diameter-weighted median diameter of a predicted foreground mask's objects at least
    :data:`MIN_DIAMETER` across, and their number; ``None`` with fewer than
    :data:`MIN_OBJECTS` such objects.

    ``fill_holes``: measure each object with its holes filled. A generator may see nuclei
    several times larger than its training data's as rings, hollow where their interior
    looks like no nucleus it learnt (``sac-lite-dsb2018`` on bright disks 80-120 px across,
    4-5x its median: 20-23 px read, 80-96 px filled); a ring's inscribed circle is its
    wall's width, not the nucleus's (``benchmarks/size_reading.py`` measures both readings
    on the validation images)."""
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    d = object_diameters(mask)
    d = d[d >= MIN_DIAMETER]
    if d.size < MIN_OBJECTS:
        return None, int(d.size)
    return weighted_median(d), int(d.size)


def diameter_scale(model_diameter: float, diameter: float) -> float:
    """The scale that brings nuclei of ``diameter`` input pixels to ``model_diameter``."""
    if not (math.isfinite(diameter) and diameter > 0):
        raise ValueError(f"a nucleus diameter must be a positive number of pixels; got "
                         f"{diameter}")
    return model_diameter / diameter


def next_scale(model_diameter: float, scale: float, mask: np.ndarray,
               smallest: float | None = None, measured: float | None = None,
               first: bool = False, fill_holes: bool = True
               ) -> tuple[float | None, float | None, int, str]:
    """One round of the automatic scale: from the foreground ``mask`` of the image resampled
    by ``scale``, (new scale or ``None`` when ``scale`` already fits, diameter in input pixels,
    objects, note).

    Nuclei between a lower end (``smallest``, below) and ``model_diameter *
    DOWNSCALE_ABOVE`` stay as they are; outside that band the image is resampled to the
    model's median size. The band is asymmetric because the two directions cost differently:
    shrinking nuclei larger than the model's pays from about 1.6x on (on 30 DSB validation
    images, ``sac-lite-dsb2018``, median 22 px, shrinking 30-40 px nuclei raised AJI by
    0.03-0.11 per image), while enlarging nuclei the model has learnt blurs them.

    ``smallest`` (the model's ``nucleus_diameter_range[0]``, the 5th percentile of its
    training images' sizes) is the lower end: nuclei at least that large were in the
    training data and are left as they are; smaller ones are enlarged. Models that do not
    record it use ``model_diameter / UPSCALE_BELOW``. On all 100 DSB validation images at
    their own size, the earlier lower end (the larger of the two, 12.2 px for
    ``sac-lite-dsb2018``) enlarged 38 images (true median nuclei 8-28 px) and lowered their
    DSB score by 0.05 on average (30 of them lower), while shrinking 20 raised it by 0.03
    (``benchmarks/results/archive/scale_dsb2018_dsb100_1x.md``: 0.535 automatic against 0.548 at
    the model's scale). For ``sac-lite-monuseg`` the lower end is 6.2 px (5.6 px by the
    ratio), which on synthetic dark nuclei 12 px across at the input (5.6-5.7 px at the
    model's scale) turned one missed nucleus of 81 into none.

    ``measured``: the nuclei's diameter at this scale from the model's size head
    (:mod:`sac.model.size_head`). Both readings err toward the model's size: the mask's
    statistic saturates (nuclei much smaller than the model's merge into clumps of about its
    size, much larger ones break into pieces of about its size), and a ridge regression
    shrinks toward the mean of its training targets. :func:`reading` combines them: the
    reading farther from ``model_diameter`` (the head alone misread synthetic disks 80-120 px
    across as in-band, where the mask's statistic was right; the mask alone read dark
    ellipses 8 px across, 4 px at ``sac-lite-monuseg``'s scale, as 9 px clumps, where the head
    was right), except where the mask reads the nuclei well below the model's size: there it
    is not saturated, and on the 38 DSB images above it was the accurate one (median error
    0.2 px against the truth, the head's 1.9 px, low on 31 of 38). The mask must hold
    :data:`MIN_OBJECTS` objects either way.

    ``first`` (the first round, which reads the size head): when the image can be brought to
    the model's size without upsampling the input (the new scale stays at most 1, as for a
    model that works at half resolution, shown an image at half magnification), nuclei
    :data:`FREE_UPSCALE_BELOW` x smaller than the model's are already enlarged: the
    enlargement only downsamples the input less, and invents no blur. On the 6 MoNuSeg
    validation images shown at 0.5x, ``sac-lite-monuseg`` (scale 0.5) kept scale 0.5 for
    nuclei read at 6.7-6.9 px (inside the 1.8x band) and scored AJI 0.448 against 0.570 at
    1x.

    ``fill_holes``: see :func:`median_diameter` (off only to measure what it changes).
    """
    d, n = median_diameter(mask, fill_holes)
    if d is None:
        return None, None, n, f"{n} foreground object(s), too few for a size estimate"
    if measured is not None:
        d = reading(model_diameter, d, measured)
    ratio = model_diameter / d
    diameter = d / scale
    low = model_diameter / UPSCALE_BELOW if smallest is None else smallest
    if first and scale * model_diameter / d <= 1.0:  # enlarging without upsampling the input
        low = max(low, model_diameter / FREE_UPSCALE_BELOW)
    if low <= d <= model_diameter * DOWNSCALE_ABOVE:
        return None, diameter, n, ""
    lo, hi = SCALE_RANGE
    new = min(max(scale * ratio, lo), hi)
    note = "" if new == scale * ratio else f"clipped to the range {lo}-{hi}"
    return new, diameter, n, note


def plausible_scales(modality: str, base: float) -> tuple[float, float]:
    """The automatic scales a model of ``modality`` at its own scale ``base`` may choose
    (:data:`PLAUSIBLE_FACTORS`; unknown modalities get the widest band)."""
    down, up = PLAUSIBLE_FACTORS.get(modality, PLAUSIBLE_FACTORS["any"])
    return base * down, base * up


def head_span(diameter_range: tuple[float, float] | None, factors: list[float] | None
              ) -> tuple[float, float] | None:
    """Diameters (px at the model's input) the size head can be trusted on: its training
    images' per-image size range (the model's ``nucleus_diameter_range``) times the smallest
    and largest resampling factor it was fitted at, widened by :data:`HEAD_SLACK` either
    way. Outside it the ridge regression extrapolates: ``sac-lite-dsb2018`` read the
    52-px nuclei of one validation image as 0.007 px, and the automatic scale, acting on
    the farther reading, enlarged the image 8x (``benchmarks/size_reading.py``). ``None``
    where the model records neither."""
    if diameter_range is None or not factors:
        return None
    return (diameter_range[0] * min(factors) / HEAD_SLACK,
            diameter_range[1] * max(factors) * HEAD_SLACK)


def trusted_head(measured: float, span: tuple[float, float] | None) -> float | None:
    """The size head's reading ``measured``, or ``None`` where it lies outside ``span``
    (:func:`head_span`) and the mask's reading must decide alone."""
    return measured if span is None or span[0] <= measured <= span[1] else None


def reading(model_diameter: float, mask: float, head: float) -> float:
    """The diameter the automatic scale acts on, from the mask's and the size head's readings
    (see :func:`next_scale`): the one farther from ``model_diameter``, except that nuclei the
    mask reads well below the model's size (under ``model_diameter / MASK_SATURATES``) keep
    the mask's reading, which is accurate there while the head's runs low."""
    far = head if abs(math.log(head / model_diameter)) > abs(
        math.log(mask / model_diameter)) else mask
    if far < model_diameter and mask < model_diameter / MASK_SATURATES:
        return mask
    return far


def weighted_median(d: np.ndarray) -> float:
    """Median of ``d`` with each value weighted by itself (see the module docstring)."""
    d = np.sort(d)
    cum = np.cumsum(d)
    return float(d[np.searchsorted(cum, cum[-1] / 2)])


def training_size(labels: list[np.ndarray]
                  ) -> tuple[float | None, tuple[float, float] | None]:
    """What a model records of its training data's nucleus size, at the model's scale:
    ``nucleus_diameter``, the statistic of :func:`median_diameter` over the objects of all
    training label images (so an image's estimate and the model's size are measured alike),
    and ``nucleus_diameter_range``, the 5th and 95th percentiles of that statistic per
    training image (images with fewer than :data:`MIN_OBJECTS` objects are left out).
    ``None`` where there are too few objects."""
    parts = [d[d >= MIN_DIAMETER] for d in (label_diameters(lab) for lab in labels)]
    pooled = np.concatenate(parts) if parts else np.zeros(0)
    if pooled.size < MIN_OBJECTS:
        return None, None
    per_image = [weighted_median(d) for d in parts if d.size >= MIN_OBJECTS]
    rng = None if not per_image else (round(float(np.percentile(per_image, 5)), 3),
                                      round(float(np.percentile(per_image, 95)), 3))
    return round(weighted_median(pooled), 3), rng
