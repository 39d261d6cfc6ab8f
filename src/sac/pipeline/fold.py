"""Long thin images, folded: a 20 x 4000 strip costs as many SAM tiles as it is long.

SAM encodes square tiles whatever they hold, so a strip much thinner than a tile pays for a
tile of padding per tile step along it. Folding cuts the strip into overlapping pieces along
its length and stacks them into a near-square image, which is segmented once. Each piece is
mirrored out by half a gap above and below, so that the network sees the piece's own texture
around it, not a hard fill edge; the mirror fades into the piece's median colour
(:func:`sac.core.tiles.pad_faded`), so that nuclei cut by the strip's edges do not meet their
mirror images in the gap and come out as extra nuclei. Each piece then keeps the nuclei whose
centroid lies in its core (cores partition the strip, as for slide chunks), so a nucleus cut by
a fold is kept whole from the piece where it sits furthest from the cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from sac.core.tiles import pad_faded
from sac.pipeline.result import SegmentResult

GAP = 16  # px between stacked pieces (input pixels)


def fold_plan(shape: tuple[int, int], tile: float, overlap: float) -> list[tuple[int, int]]:
    """Pieces ``(start, stop)`` along a strip's long side, or [] when folding does not pay.

    ``tile`` and ``overlap`` are SAM's tile side and overlap in input pixels. A strip is folded
    when its short side is under half a tile and its long side over three tiles.
    """
    short, long_ = min(shape), max(shape)
    if short > tile / 2 or long_ < 3 * tile:
        return []
    ov = max(2, math.ceil(overlap))
    side = math.sqrt(long_ * (short + GAP))  # a square of the same area
    length = max(int(side), 4 * ov)
    starts = list(range(0, max(1, long_ - ov), length - ov))
    return [(s, min(s + length, long_)) for s in starts]


def fold_segment(image: np.ndarray, pieces: list[tuple[int, int]],
                 segment: Callable[[np.ndarray], SegmentResult]) -> SegmentResult:
    """Segment ``image`` folded into ``pieces`` (from :func:`fold_plan`) with ``segment``
    (the segmenter's own method, called on the folded image); labels at the input's size."""
    tall = image.shape[0] > image.shape[1]
    strip = np.swapaxes(image, 0, 1) if tall else image  # long side along columns
    h = strip.shape[0]
    length = max(b - a for a, b in pieces)
    half = GAP // 2
    blocks = []  # each piece mirrored out by half a gap above and below (and to full length)
    for a, b in pieces:
        blocks.append(pad_faded(strip[:, a:b], ((half, half), (0, length - (b - a)))))
    folded = np.concatenate(blocks, axis=0)
    res = segment(folded)
    labels = np.zeros(strip.shape[:2], np.uint32)
    sem = None if res.semantic is None else np.zeros(strip.shape[:2], bool)
    scores: dict[int, float] = {}
    for i, (a, b) in enumerate(pieces):
        lo = a if i == 0 else (a + pieces[i - 1][1]) // 2  # the middle of the overlap
        hi = b if i == len(pieces) - 1 else (pieces[i + 1][0] + b) // 2
        rows = slice(i * (h + GAP) + half, i * (h + GAP) + half + h)
        if sem is not None:
            sem[:, lo:hi] = res.semantic[rows, lo - a: hi - a]  # type: ignore[index]
        block = res.labels[rows, : b - a]
        ids = np.unique(block[block > 0])
        if not len(ids):
            continue
        cx = np.asarray(ndimage.center_of_mass(np.ones_like(block), block, ids))[:, 1] + a
        for label in ids[(cx >= lo) & (cx < hi)].tolist():
            new = len(scores) + 1
            ys, xs = np.nonzero(block == label)
            free = labels[ys, xs + a] == 0
            labels[ys[free], xs[free] + a] = new
            scores[new] = res.scores.get(int(label), float("nan"))
    scores = {k: v for k, v in scores.items() if not math.isnan(v)}
    if tall:
        labels = np.ascontiguousarray(labels.T)
        sem = None if sem is None else np.ascontiguousarray(sem.T)
    size = res.size
    if size is not None:
        import dataclasses

        note = "; ".join(x for x in (size.note, f"folded into {len(pieces)} pieces") if x)
        size = dataclasses.replace(size, note=note)
    return SegmentResult(labels, sem, scores, res.n_detected, res.timings, size)
