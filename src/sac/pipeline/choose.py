"""``--model auto``: the shipped specialist for each image's type, chosen per image.

Users do not know which model fits their image, and the wrong one is useless: the H&E model
on fluorescence scored DSB score 0.05 where the fluorescence model scored 0.48. Dark-field
and bright-field images are easy to tell apart (:func:`sac.core.images.image_type`), so
``auto`` picks the specialist made for the image's type (:data:`MODEL_FOR`, measured by
``benchmarks/auto_model.py``) and says which it used. Each specialist is loaded on first use
and kept.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import numpy as np

from sac.core.images import image_type
from sac.pipeline.result import SegmentResult

#: the kind of segmenter an :class:`AutoSegmenter` routes to (a
#: :class:`~sac.pipeline.segmenter.Segmenter`; generic, so that this module does not import
#: the segmenter module, which imports it)
S = TypeVar("S")

AUTO = "auto"
#: the model of ``sac segment``, ``sac refine`` and the napari widgets when none is named
DEFAULT_MODEL = AUTO
#: image type -> the shipped model used for it by ``--model auto``
MODEL_FOR = {"histology": "sac-lite-monuseg", "brightfield": "sac-lite-dsb2018",
             "fluorescence": "sac-lite-dsb2018"}


def concrete(seg: S | AutoSegmenter[S], image: np.ndarray, source: str = "image"
             ) -> tuple[S, str | None]:
    """The segmenter that works on ``image`` and, for an :class:`AutoSegmenter`, the name of
    the model it chose (None otherwise)."""
    if isinstance(seg, AutoSegmenter):
        chosen, name, _ = seg.pick(image, source)
        return chosen, name
    return seg, None


class AutoSegmenter(Generic[S]):
    """Segments each image with the model :data:`MODEL_FOR` gives its type.

    ``load(name)`` makes the segmenter of a shipped model (with the caller's settings); the
    result's size note starts with the model used and why."""

    def __init__(self, load: Callable[[str], S]) -> None:
        self._load = load
        self._segmenters: dict[str, S] = {}
        self._lock = threading.Lock()

    def pick(self, image: np.ndarray, source: str = "image") -> tuple[S, str, str]:
        """The segmenter for ``image``, its model's name and the image's type."""
        kind = image_type(image, source)
        name = MODEL_FOR[kind]
        with self._lock:
            if name not in self._segmenters:
                self._segmenters[name] = self._load(name)
            return self._segmenters[name], name, kind

    def config_dict(self) -> dict[str, Any]:
        """The routing and the settings of each specialist loaded so far (for reports)."""
        with self._lock:
            segs: dict[str, Any] = dict(self._segmenters)  # S: a Segmenter
        loaded = {n: seg.config_dict() for n, seg in segs.items()}
        return {"model": AUTO, "routing": dict(MODEL_FOR), "loaded": loaded}

    def for_slides(self) -> S:
        """The segmenter whole slides get: slides are read as bright-field stains (the
        tissue mask is made for them), so the histology model."""
        name = MODEL_FOR["histology"]
        with self._lock:
            if name not in self._segmenters:
                self._segmenters[name] = self._load(name)
            return self._segmenters[name]

    def segment(self, image: np.ndarray, source: str = "image", **kwargs: Any
                ) -> SegmentResult:
        """:meth:`Segmenter.segment` with the model chosen for this image."""
        seg, name, kind = self.pick(image, source)
        result: SegmentResult = seg.segment(image, source, **kwargs)  # type: ignore[attr-defined]
        return with_model(result, name, kind)


def with_model(result: SegmentResult, name: str, kind: str) -> SegmentResult:
    """``result`` with the automatic choice of model recorded in its size note."""
    if result.size is None:
        return result
    why = f"model {name} (auto: {kind} image)"
    note = f"{why}; {result.size.note}" if result.size.note else why
    result.size = dataclasses.replace(result.size, note=note)
    return result
