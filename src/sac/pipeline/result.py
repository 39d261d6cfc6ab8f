"""What one segmentation returns, and the per-stage clock that times it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from sac.pipeline.size import SizeEstimate


@dataclass
class SegmentResult:
    """Instance labels (uint32, 0 = background) at the input size, the semantic mask if asked,
    each label's predicted quality, and where the time went (seconds)."""

    labels: np.ndarray
    semantic: np.ndarray | None
    scores: dict[int, float]
    n_detected: int
    timings: dict[str, float] = field(default_factory=dict)
    size: SizeEstimate | None = None  # how the scale was chosen (and the nucleus size)

    @property
    def n_nuclei(self) -> int:
        """Nuclei in the labels (those added from the semantic mask have no score)."""
        ids = np.unique(self.labels)
        return int(np.count_nonzero(ids))


class Clock:
    """Adds elapsed wall time per stage."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.times[stage] = self.times.get(stage, 0.0) + now - since
        return now
