"""Job-array shards: ``--shard I/N`` takes every N-th image and every N-th chunk of each slide.

No engine is needed: a SLURM array (``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``
with ``--array=0-(N-1)``) runs N copies of the same command. Images go to shards by their
position among the image inputs, chunks by their index in the slide's grid, so the shards
never overlap and together cover everything, whatever each finds already done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sac.core.errors import ConfigError


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (from 0) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"--shard {self.index}/{self.count}: need 0 <= I < N "
                              "(I counts from 0, as SLURM array task ids do with "
                              "--array=0-(N-1))")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` -> Shard(I, N)."""
        i, sep, n = text.partition("/")
        try:
            if not sep:
                raise ValueError
            return cls(int(i), int(n))
        except ValueError:
            raise ConfigError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None

    def mine(self, position: int) -> bool:
        """Whether the item at ``position`` belongs to this shard."""
        return position % self.count == self.index

    def chunk_filter(self) -> Any:
        """The chunk selector for :func:`sac.slides.segment.segment_slide`."""
        return lambda tile: self.mine(tile.index)
