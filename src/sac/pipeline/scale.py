"""The scale policy, in one place: how much each input is resampled before the model.

From strongest to weakest (:func:`choose_scale`):

1. what the user gives (:class:`ScaleRequest`, at most one): ``--scale``, ``--pixel-size``
   against the model's, or ``--diameter`` against the model's nucleus size;
2. the file's own pixel size (an image's tags, a slide's), for a model that records its
   pixel size, unless it is implausible for that model (then ignored, and said);
3. the image's nuclei, read by the automatic scale (:func:`estimated_scale`: read the size,
   resample, read again, when the evidence allows; :mod:`sac.pipeline.size` holds the
   readings and the rules), unless it is off, the model records no nucleus size, the image
   is too thin to show whole nuclei, or the model was fine-tuned on a few images of one setting
   (``auto_scale`` false in its config: their scale is its own): then the model's own scale.

Whole slides follow the same order (:func:`slide_scale`): a pixel size also picks the pyramid
level, and one estimate from sampled tissue chunks serves every chunk.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from sac.core.checks import number
from sac.core.errors import ConfigError
from sac.core.resample import MAX_SCALE, MIN_SCALE, input_scale, resample_image
from sac.model.size_head import image_style
from sac.pipeline.evidence import image_kind, nucleus_like_mask
from sac.pipeline.maps import Maps
from sac.pipeline.size import (
    MAX_ROUNDS,
    SizeEstimate,
    diameter_scale,
    head_span,
    next_scale,
    plausible_scales,
    size_evidence,
    trusted_head,
)

FIXED_NOTE = ("the model's own scale: it was fine-tuned on a few images of one setting, at "
              "their scale (give --scale, --pixel-size or --diameter for other images)")
THIN_NOTE = "too thin for a size estimate (nuclei are cut by its edges): the model's scale"


@dataclass(frozen=True)
class ScaleRequest:
    """What is known of an input's scale before its pixels are read: at most one of
    ``scale`` (a resampling factor), ``pixel_size`` (micrometres per input pixel) and
    ``diameter`` (typical nucleus diameter in input pixels), given by the user, and the
    file's own ``file_pixel_size``."""

    scale: float | None = None
    pixel_size: float | None = None
    diameter: float | None = None
    file_pixel_size: float | None = None

    def __post_init__(self) -> None:
        given = [n for n in ("scale", "pixel_size", "diameter") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ConfigError(f"give one of scale, pixel size and diameter, not {given}")
        if self.scale is not None:
            number("scale", self.scale, MIN_SCALE, MAX_SCALE)
        if self.pixel_size is not None:
            number("pixel size", self.pixel_size, 0, 100, lo_open=True)
        if self.diameter is not None:
            number("diameter", self.diameter, 0.5, 1e4)

    @staticmethod
    def of(scale: float | ScaleRequest | None = None, diameter: float | None = None
           ) -> ScaleRequest:
        """A request from a factor (or a request) and a diameter, as the API takes them."""
        if isinstance(scale, ScaleRequest):
            return scale if diameter is None else dataclasses.replace(scale, diameter=diameter)
        return ScaleRequest(scale=scale, diameter=diameter)


@dataclass(frozen=True)
class Given:
    """The scale a request fixes (``scale`` None: read it from the image), what fixed it
    (``source``, as in :class:`SizeEstimate`: a pixel size gives a ``"scale"``) and a note
    for the summary."""

    scale: float | None
    source: str = "model"
    note: str = ""


def given_scale(config: Any, request: ScaleRequest) -> Given:
    """Steps 1 and 2 of the policy (see the module docstring) for a model's ``config``."""
    if request.scale is not None:
        return Given(float(request.scale), "scale")
    if request.pixel_size is not None:
        return Given(input_scale(config.input_scale, config.pixel_size_um,
                                 pixel_size=request.pixel_size), "scale")
    if request.diameter is not None:
        if config.nucleus_diameter is None:
            raise ConfigError("this model does not record the nucleus size it was trained "
                              "on; use --scale instead of --diameter")
        return Given(diameter_scale(config.nucleus_diameter, request.diameter), "diameter")
    pixel_um = request.file_pixel_size
    if pixel_um is None or config.pixel_size_um is None:
        return Given(None)
    try:
        found = input_scale(config.input_scale, config.pixel_size_um, pixel_size=pixel_um)
    except ConfigError:
        return Given(None, note=f"the file's pixel size {pixel_um:g} um is implausible for "
                                "this model: ignored")
    return Given(found, "scale", f"from the file's pixel size, {pixel_um:g} um")


def too_thin(config: Any, shape: tuple[int, ...]) -> bool:
    """Whether an image is under 3 training-size nuclei across at the model's scale: its
    nuclei are cut by its edges, and their size cannot be estimated from it."""
    d = config.nucleus_diameter
    return d is not None and min(shape[:2]) * config.input_scale < 3 * d


def smallest(config: Any) -> float | None:
    """The low end of the model's training-size range (see :func:`next_scale`)."""
    rng = config.nucleus_diameter_range
    return None if rng is None else rng[0]


class Reader(Protocol):
    """What the policy uses of a :class:`~sac.pipeline.segmenter.Segmenter` (a protocol, so
    that this module does not import the segmenter that runs it)."""

    config: Any
    model: Any
    thresholds: Any
    options: Any

    def generator_maps(self, rgb: np.ndarray) -> Maps: ...


def choose_scale(seg: Reader, rgb0: np.ndarray, request: ScaleRequest
                 ) -> tuple[np.ndarray, Maps, SizeEstimate]:
    """The image resampled for the model, its generator maps, and how the scale was chosen
    (the whole policy: see the module docstring)."""
    cfg = seg.config
    given = given_scale(cfg, request)
    if given.scale is not None:
        rgb = resample_image(rgb0, given.scale)
        maps = seg.generator_maps(rgb)
        est = _checked(seg, rgb, maps, given.scale, given.source, request.diameter)
        return rgb, maps, _noted(est, given.note)
    scale = cfg.input_scale
    rgb = resample_image(rgb0, scale)
    maps = seg.generator_maps(rgb)
    if cfg.nucleus_diameter is None:
        return rgb, maps, SizeEstimate(None, 0, scale, "model",
                                       _join(given.note, "the model records no nucleus size"))
    if too_thin(cfg, rgb0.shape):
        return rgb, maps, SizeEstimate(None, 0, scale, "model", _join(given.note, THIN_NOTE))
    why = auto_scale_off(seg)
    if why:
        est = _checked(seg, rgb, maps, scale, "model", None)
        return rgb, maps, _noted(est, _join(given.note, why), first=True)
    rgb, maps, est = estimated_scale(seg, rgb0, rgb, maps, scale, cfg.nucleus_diameter)
    return rgb, maps, _noted(est, given.note, first=True)


def auto_scale_off(seg: Reader) -> str:
    """Why the automatic scale may not resample for ``seg`` ("" when it may): the user turned
    it off, or the model keeps its own scale (``auto_scale`` false: fine-tuned on a few
    images of one setting). Images and slides alike ask here."""
    if not seg.options.auto_scale:
        return "automatic scale off"
    return "" if seg.config.auto_scale else FIXED_NOTE


def nuclei_mask(mask: np.ndarray, rgb: np.ndarray, kind: str | None) -> np.ndarray:
    """The generator's foreground ``mask`` of ``rgb`` (an image of type ``kind``) as the size
    reading counts it: without the objects that do not stand out from their surroundings
    the way nuclei do (holes, fat, stroma: :func:`sac.pipeline.evidence.nucleus_like_mask`),
    unless ``kind`` is ``None`` (the evidence check is off)."""
    if kind is None or mask.shape != rgb.shape[:2]:
        return mask
    return nucleus_like_mask(mask, rgb, kind)


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _noted(est: SizeEstimate, note: str, first: bool = False) -> SizeEstimate:
    """``est`` with ``note`` added (before its own with ``first``, else after)."""
    if not note:
        return est
    both = _join(note, est.note) if first else _join(est.note, note)
    return dataclasses.replace(est, note=both)


def _checked(seg: Reader, rgb: np.ndarray, maps: Maps, scale: float, source: str,
             diameter: float | None) -> SizeEstimate:
    """A scale fixed without the estimate, with what the image's own nuclei say about it:
    the estimate at that scale, and a note when the automatic scale would resample it (see
    :func:`sac.pipeline.size.next_scale`; the fixed scale still wins)."""
    model_d = seg.config.nucleus_diameter
    if model_d is None:
        return SizeEstimate(diameter, 0, scale, source)
    kind = image_kind(rgb) if seg.options.check_evidence else None
    new, d, n, _ = next_scale(model_d, scale, nuclei_mask(maps.fg >= seg.thresholds.fg, rgb,
                                                          kind), smallest(seg.config))
    note = ""
    if new is not None:
        note = (f"at this scale the nuclei look {scale / new:.2g}x the model's training "
                f"size; the estimate would resample by {new:.3g}")
    return SizeEstimate(diameter if diameter is not None else d, n, scale, source, note)


def slide_scale(config: Any, request: ScaleRequest, level: int | None,
                downsamples: Sequence[float], level_for: Callable[[float], int]
                ) -> tuple[int, float, Given]:
    """A whole slide's processing level and the residual resampling of that level, and how
    they were chosen (``Given.scale`` None: estimate from sampled chunks, see
    :func:`sac.slides.segment.plan_slide`). ``request.file_pixel_size``: the slide's level-0
    pixel size; ``level_for(downsample)``: the slide's level for a downsample.

    A pixel size (the user's or the slide's) picks the level closest to, and not coarser
    than, the model's pixel size (unless ``level`` is given) and resamples the rest of the
    way; a scale or diameter applies at ``level`` (default 0) as given."""
    given = given_scale(config, request)
    by_pixel_size = request.scale is None and request.diameter is None
    if given.scale is None or not by_pixel_size:
        return level or 0, given.scale or config.input_scale, given
    lvl = level_for(max(1 / given.scale, 1.0)) if level is None else level
    return lvl, given.scale * float(downsamples[lvl]), given


def estimated_scale(seg: Reader, rgb0: np.ndarray, rgb: np.ndarray, maps: Maps,
                    base: float, model_d: float) -> tuple[np.ndarray, Maps, SizeEstimate]:
    """The automatic scale's rounds from the model's scale ``base`` (see
    :mod:`sac.pipeline.size`): a reading resamples the image only when the evidence
    under it holds (:meth:`SizeEvidence.weakness`), an enlargement must make the objects
    grow with the image, and the scale stays within the plausible band of the model's
    modality (:func:`plausible_scales`)."""
    first = (rgb, maps)
    best, chosen, note, scale = None, first, "", base
    lo, hi = plausible_scales(seg.config.modality, base)
    grown: tuple[float, float] | None = None  # (diameter read, enlargement) last round
    kind = image_kind(rgb0) if seg.options.check_evidence else None
    span = head_span(seg.config.nucleus_diameter_range,
                     (seg.config.size_head or {}).get("factors"))  # where the head is trusted
    bound_note = ""  # a bounded round's note holds for the rounds after it
    for k in range(MAX_ROUNDS):
        # the size head reads the first round (the map saturates near the model's size);
        # the map's statistic, accurate near that size, refines the later ones
        head = seg.model.size_head
        measured = (None if head is None or k else trusted_head(
            head.predict(image_style(seg.model.generator, rgb)), span))
        mask = nuclei_mask(maps.fg >= seg.thresholds.fg, rgb, kind)
        new, d, n, note = next_scale(model_d, scale, mask, smallest(seg.config), measured,
                                     first=k == 0)
        if d is None:  # no estimate at this scale: keep the last one that had one
            break
        if grown is not None and d * scale < grown[0] * grown[1] / 2:
            # enlarged by f, nuclei read about f times larger; texture does not grow
            msg = (f"objects read {grown[0]:.1f} px did not grow with the image "
                   f"enlarged {grown[1]:.2g}x (texture, not nuclei): the model's scale")
            return (*first, SizeEstimate(None, n, base, "model", msg))
        weak = "" if new is None else size_evidence(mask, measured, d * scale).weakness()
        if weak:  # keep the scale this round reads at (the model's, or a confident one)
            msg = f"too little evidence to resample ({weak}): kept scale {scale:.3g}"
            return rgb, maps, SizeEstimate(d, n, scale, "estimated" if k else "model", msg)
        chosen = (rgb, maps)
        if new is not None and not lo <= new <= hi:
            bounded = min(max(new, lo), hi)
            note = (f"the reading asked for scale {new:.3g}, beyond the plausible "
                    f"{lo:.3g}-{hi:.3g} for {seg.config.modality} images; bounded (give "
                    "--diameter or --scale to go further)")
            new = None if math.isclose(bounded, scale) else bounded
            bound_note = note
        if new is not None and k == MAX_ROUNDS - 1:
            note = f"the estimate had not settled after {MAX_ROUNDS} rounds"
        best = SizeEstimate(d, n, scale, "estimated", note or bound_note)
        if new is None or k == MAX_ROUNDS - 1:
            break
        grown = (d * scale, new / scale) if new > scale * 1.2 else None
        scale = new
        rgb = resample_image(rgb0, scale)
        maps = seg.generator_maps(rgb)
    if best is None:
        return (*chosen, SizeEstimate(None, n, base, "model", note))
    return (*chosen, best)
