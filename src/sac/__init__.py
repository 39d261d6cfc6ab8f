"""Segment Any Cell: nucleus segmentation by fine-tuning Segment Anything on a CPU.

The public Python API, importable from ``sac`` directly (loaded on first use, so ``import sac``
stays cheap):

- :func:`load_segmenter` (a model folder or shipped name -> a :class:`Segmenter`, whose
  ``segment(image)`` returns instance labels) and :func:`load_model` / :func:`save_model`;
- :func:`segment_slide` for whole slides, chunk by chunk;
- :func:`load_sam` and :class:`SamPredictor` for SAM itself with your own prompts;
- :func:`read_image` and :func:`write_labels_tif` for files;
- :class:`SegmentOptions` (how a segmenter runs), :class:`ScaleRequest` (what is known of an
  image's scale) and :class:`SlideOptions` (how a slide is cut);
- :func:`train` to train a model, or fine-tune one on a few of your own images;
  :func:`tune` to choose its thresholds on validation images; :func:`evaluate` to score a
  model or saved labels on a labelled dataset.

Everything else lives in the stage packages (``sac.core``, ``sac.modeling``, ``sac.sam``,
``sac.model``, ``sac.pipeline``, ``sac.slides``, ``sac.outputs``, ``sac.data``,
``sac.metrics``, ``sac.training``, ``sac.cli``; see docs/development.md).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_API = {
    "load_segmenter": "sac.pipeline.segmenter",
    "Segmenter": "sac.pipeline.segmenter",
    "SegmentResult": "sac.pipeline.result",
    "load_model": "sac.model.store",
    "save_model": "sac.model.store",
    "shipped_models": "sac.model.store",
    "segment_slide": "sac.slides.segment",
    "load_sam": "sac.sam.backbones",
    "SamPredictor": "sac.sam.predictor",
    "read_image": "sac.data.images",
    "write_labels_tif": "sac.outputs.images",
    "train": "sac.training.run",
    "tune": "sac.training.tune_run",
    "evaluate": "sac.metrics.evaluate",
    "SegmentOptions": "sac.pipeline.options",
    "ScaleRequest": "sac.pipeline.scale",
    "SlideOptions": "sac.slides.options",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sac' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
