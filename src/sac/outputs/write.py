"""All the files of one segmented image, written the way ``sac segment`` writes them.

The label TIFF always; on request the other kinds of :mod:`sac.outputs.kinds`. Every file is
written atomically and never silently overwritten. The CSV rows and the GeoJSON metadata
record how the image was resampled.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sac.pipeline.result import SegmentResult


def write_outputs(paths: dict[str, Path], image: np.ndarray, result: SegmentResult,
                  pixel_size_um: float | None, stem: str, overwrite: bool = False,
                  written: list[Path] | None = None) -> list[Path]:
    """Write each output of ``paths`` (kinds of :data:`sac.outputs.kinds.KINDS`, in their
    order) for a :class:`~sac.pipeline.result.SegmentResult` of ``image``; returns (and
    appends to ``written``, as it goes) the files written, so a failure midway leaves a list
    of what exists. The semantic mask is skipped where the result has none."""
    from sac.outputs.kinds import KINDS

    written = [] if written is None else written
    for name, kind in KINDS.items():
        if name not in paths or (kind.needs_semantic and result.semantic is None):
            continue
        written.append(kind.write(paths[name], image, result, pixel_size_um, stem, overwrite))
    return written
