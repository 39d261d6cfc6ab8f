"""How a whole slide is read and cut, declared once: :class:`SlideOptions`.

``sac segment`` builds one from its whole-slide flags, the batch runner and every Dask worker
or job-array shard pass it along, and :func:`sac.slides.segment.plan_slide` reads it, so all
of them cut a slide into the same chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sac.core.checks import number, replaced
from sac.core.errors import ConfigError

CHUNK = 2048  # default chunk side, pixels at the processed level
CHUNK_OVERLAP = 128  # default overlap of neighbouring chunks


@dataclass(frozen=True)
class SlideOptions:
    """``level``: the pyramid level to process (None: chosen from the pixel sizes);
    ``region``: x, y, w, h in level-0 pixels (None: the whole slide); ``chunk`` and
    ``overlap``: the chunk grid at the processed level; ``tissue``: skip chunks the thumbnail
    tissue mask finds empty (off for fluorescence slides)."""

    level: int | None = None
    region: tuple[int, int, int, int] | None = None
    chunk: int = CHUNK
    overlap: int = CHUNK_OVERLAP
    tissue: bool = True

    def __post_init__(self) -> None:
        number("chunk", self.chunk, 64, 16384, integer=True)
        number("overlap", self.overlap, 0, self.chunk - 1, integer=True)
        if self.level is not None:
            number("level", self.level, 0, integer=True)
        if self.region is not None:
            if len(self.region) != 4:
                raise ConfigError(f"region must be x, y, width, height; got {self.region}")
            for name, v in zip(("x", "y", "width", "height"), self.region, strict=True):
                number(f"region {name}", v, 0, integer=True)
            if min(self.region[2:]) < 1:
                raise ConfigError(f"region width and height must be >= 1; got "
                                  f"{tuple(self.region[2:])}")
            object.__setattr__(self, "region", tuple(int(v) for v in self.region))

    def replace(self, **changes: Any) -> SlideOptions:
        """A copy with ``changes`` (checked like a new value; unknown names refused)."""
        return cast(SlideOptions, replaced(self, "slide option", changes))
