"""What ``sac segment`` does to each input, as one frozen, picklable value.

The same :class:`SegmentSettings` drive the single-process loop, every shard of a job array and
every Dask worker, so all of them write the same files. A worker builds its segmenter from the
settings once and keeps it (:func:`cached_segmenter`), however many tasks it runs.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sac.pipeline.choose import DEFAULT_MODEL
from sac.pipeline.options import SegmentOptions
from sac.slides.options import SlideOptions

if TYPE_CHECKING:
    from sac.pipeline.segmenter import AnySegmenter


@dataclass(frozen=True)
class SegmentSettings:
    """Model, inference options, scale, outputs and whole-slide options of a segmentation
    run."""

    output: Path
    model: str = DEFAULT_MODEL
    device: str = "cpu"
    options: SegmentOptions = field(default_factory=SegmentOptions)  # how the segmenter runs
    sam_checkpoint: Path | None = None
    save: tuple[str, ...] = ()  # of sac.outputs.kinds.OPTIONAL; the label TIFF always
    prompts: Path | None = None
    scale: float | None = None
    pixel_size: float | None = None
    diameter: float | None = None
    channel: int | None = None
    wsi: bool = False
    slide: SlideOptions = field(default_factory=SlideOptions)  # level, region, chunks, tissue
    slide_labels: bool = False
    overwrite: bool = False
    threads: int | None = None  # torch threads per process (None: torch's default)

    def __post_init__(self) -> None:
        from sac.outputs.kinds import OPTIONAL

        bad = sorted(set(self.save) - set(OPTIONAL))
        if bad:
            raise ValueError(f"unknown output kind(s) {bad}; known: {OPTIONAL}")

    def model_key(self) -> tuple[Any, ...]:
        """What the segmenter depends on (settings that differ only in outputs share one),
        with the model folder's file stamps, so a folder rewritten in place is reloaded."""
        return (self.model, _stamp(self.model), self.device, self.options,
                self.sam_checkpoint, self.threads)

    def replace(self, **changes: Any) -> SegmentSettings:
        return dataclasses.replace(self, **changes)


def _stamp(model: str) -> tuple[Any, ...]:
    """(name, size, mtime) of each file of a model folder; () for a shipped name."""
    folder = Path(model)
    try:
        return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                     for p in sorted(folder.iterdir()) if p.is_file())
    except OSError:
        return ()


_LOCK = threading.Lock()
_SEGMENTERS: dict[tuple[Any, ...], AnySegmenter] = {}
LOADS: list[tuple[Any, ...]] = []  # every load in this process, for tests and reports


def cached_segmenter(settings: SegmentSettings) -> AnySegmenter:
    """This process's segmenter for ``settings``, loaded on first use and then reused.

    Sets the torch threads in the calling thread each time: a Dask worker runs tasks in its
    own threads, and OpenMP's thread count is per thread (``torch.get_num_threads`` may say
    2 where the thread's parallel regions still use 1)."""
    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)
    key = settings.model_key()
    with _LOCK:
        seg = _SEGMENTERS.get(key)
        if seg is None:
            seg = load_for(settings)
            _SEGMENTERS[key] = seg
            LOADS.append(key)
        return seg


def load_for(settings: SegmentSettings) -> AnySegmenter:
    """A new :class:`~sac.pipeline.segmenter.Segmenter` for ``settings`` (for ``--model
    auto``, a :class:`~sac.pipeline.choose.AutoSegmenter` that loads each specialist with
    the same settings on first use)."""
    from sac.pipeline.segmenter import load_segmenter

    return load_segmenter(settings.model, settings.device, settings.options,
                          settings.sam_checkpoint)


def load_count() -> int:
    """How many segmenters this process has loaded."""
    return len(LOADS)
