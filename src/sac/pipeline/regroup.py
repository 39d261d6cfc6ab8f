"""Regrouping another tool's nuclei into the model's: merges split, fragments joined, objects
with no nucleus dropped.

A threshold-and-watershed segmentation merges touching nuclei, cuts one nucleus into pieces
and outlines stroma texture; SAM prompted once per given object inherits every such mistake.
The model's own detections (stage 2, :mod:`sac.pipeline.nuclei`) count nuclei better than a
threshold does, so ``sac refine --repair`` keeps the given pixels and changes only how they
are grouped: a given object and a detection are *linked* when their overlap holds at least
``share`` of either; in each connected group of links, every given pixel goes to its nearest
linked detection; a given object linked to no detection is dropped. One given object over two
detections becomes two nuclei, two given objects over one detection become one, and an object
and a detection that agree are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: a given object and a detection are linked when their overlap is this share of either
LINK_SHARE = 0.5


@dataclass
class Regrouped:
    """The regrouped labels and what changed: given objects ``split`` over several nuclei,
    ``joined`` into another object's nucleus (their id gone), ``dropped`` (no detection)."""

    labels: np.ndarray
    split: int = 0
    joined: int = 0
    dropped: int = 0

    def summary(self) -> str:
        return f"{self.split} split, {self.joined} joined, {self.dropped} dropped"


def regroup(given: np.ndarray, detected: np.ndarray, share: float = LINK_SHARE) -> Regrouped:
    """``given`` instance labels regrouped by the ``detected`` ones (same shape, see the
    module docstring). Each new nucleus keeps the id of the given object holding most of its
    pixels where that id is still free; other new nuclei are numbered after the largest
    given id."""
    if given.shape != detected.shape:
        raise ValueError(f"given {given.shape} and detected {detected.shape} labels differ")
    g = given.astype(np.int64, copy=False)
    d = detected.astype(np.int64, copy=False)
    ng, nd = int(g.max()) + 1, int(d.max()) + 1
    area_g = np.bincount(g.ravel(), minlength=ng)
    area_d = np.bincount(d.ravel(), minlength=nd)
    both = (g > 0) & (d > 0)
    pairs = coo_matrix((np.ones(int(both.sum()), np.int64), (g[both], d[both])),
                       shape=(ng, nd)).tocsr().tocoo()  # summed overlaps
    link = (pairs.data >= share * area_d[pairs.col]) | (pairs.data >= share * area_g[pairs.row])
    rows, cols = pairs.row[link], pairs.col[link]
    graph = coo_matrix((np.ones(len(rows)), (rows, ng + cols)), shape=(ng + nd, ng + nd))
    _, group = connected_components(graph, directed=False)
    present = area_g > 0
    present[0] = False
    linked = np.zeros(ng, bool)
    linked[rows] = True
    out = np.where(linked[g], g, 0).astype(np.uint32)
    result = Regrouped(out, dropped=int((present & ~linked).sum()))
    dets_of: dict[int, set[int]] = {}
    gives_of: dict[int, set[int]] = {}
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        dets_of.setdefault(int(group[r]), set()).add(c)
        gives_of.setdefault(int(group[r]), set()).add(r)
    next_id = ng
    boxes = ndi.find_objects(g)
    for key in sorted(gives_of):
        own, dets = sorted(gives_of[key]), sorted(dets_of[key])
        if len(own) > 1 or len(dets) > 1:  # one object on one detection stays as it is
            next_id = _regroup_one(g, d, out, boxes, own, dets, next_id, result)
    result.labels = out
    return result


def _regroup_one(g: np.ndarray, d: np.ndarray, out: np.ndarray, boxes: list,
                 own: list[int], dets: list[int], next_id: int, result: Regrouped) -> int:
    """Give the pixels of the given objects ``own`` to their nearest detection of ``dets``
    (one linked group); returns the next free id."""
    spans = [boxes[k - 1] for k in own]
    box = (slice(min(b[0].start for b in spans), max(b[0].stop for b in spans)),
           slice(min(b[1].start for b in spans), max(b[1].stop for b in spans)))
    gm, dm = g[box], d[box]
    mm = np.isin(gm, own)
    seeds = np.where(mm & np.isin(dm, dets), dm, 0)
    _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    nearest = np.where(mm, seeds[iy, ix], 0)
    view = out[box]
    used: set[int] = set()
    pieces = [k for k in dets if (nearest == k).any()]
    by_size = sorted(pieces, key=lambda k: -int((nearest == k).sum()))
    owners: dict[int, set[int]] = {}
    for k in by_size:
        piece = nearest == k
        holders = np.bincount(gm[piece], minlength=int(gm.max()) + 1)
        holders[0] = 0
        best = int(np.argmax(holders))
        if best in used:
            new, next_id = next_id, next_id + 1
        else:
            new = best
            used.add(best)
        view[piece] = new
        for h in np.flatnonzero(holders):
            owners.setdefault(int(h), set()).add(new)
    result.split += sum(1 for h in own if len(owners.get(h, ())) > 1)
    result.joined += sum(1 for h in own if h not in used and h in owners)
    return next_id
