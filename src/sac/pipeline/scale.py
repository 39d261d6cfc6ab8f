"""The automatic scale's rounds: read the nuclei's size, resample, read again, when the
evidence allows (:mod:`sac.pipeline.size` holds the readings and the rules; this module
runs them with a :class:`~sac.pipeline.segmenter.Segmenter`'s generator)."""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from sac.core.resample import resample_image
from sac.model.size_head import image_style
from sac.pipeline.maps import Maps
from sac.pipeline.size import (
    MAX_ROUNDS,
    SizeEstimate,
    next_scale,
    plausible_scales,
    size_evidence,
    trusted_head,
)


class Reader(Protocol):
    """What the rounds use of a :class:`~sac.pipeline.segmenter.Segmenter` (a protocol, so
    that this module does not import the segmenter that runs it)."""

    config: Any
    model: Any
    thresholds: Any

    def head_span(self) -> tuple[float, float] | None: ...

    def smallest(self) -> float | None: ...

    def generator_maps(self, rgb: np.ndarray) -> Maps: ...


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
    bound_note = ""  # a bounded round's note holds for the rounds after it
    for k in range(MAX_ROUNDS):
        # the size head reads the first round (the map saturates near the model's size);
        # the map's statistic, accurate near that size, refines the later ones
        head = seg.model.size_head
        measured = (None if head is None or k else trusted_head(
            head.predict(image_style(seg.model.generator, rgb)), seg.head_span()))
        mask = maps.fg >= seg.thresholds.fg
        new, d, n, note = next_scale(model_d, scale, mask, seg.smallest(), measured,
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
