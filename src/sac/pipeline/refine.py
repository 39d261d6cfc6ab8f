"""Refining another tool's nuclei with SAM: each given nucleus prompts its own new mask.

By default (``repair``) the given nuclei are first regrouped by the model's own detections
(:mod:`sac.pipeline.regroup`: merges split, fragments joined, objects with no nucleus
dropped); with ``repair=False`` the given objects stay exactly as they are. Every nucleus then
becomes one prompt set (a positive point deep inside it, optionally its box and negatives at
its nearest neighbours, as :class:`RefineSettings` says) decoded by the model's SAM on a
window around it, at the model's automatic scale for the image. A new mask replaces the old
outline only where SAM found the same nucleus: not empty, scored at least the model's
``min_score``, holding the prompt point, and overlapping the old outline by ``min_iou`` (when
repairing, also when it holds half of it: a part grown to its whole nucleus); otherwise the
nucleus keeps its outline. Where new masks overlap, the surer one keeps the pixels; kept
outlines are never cut. Ids are the given ones, except a split nucleus's new parts.

Why these defaults (``benchmarks/results/refine``, MoNuSeg validation): a strong tool's
labels (another SAC model's, AJI 0.58) lost 0.07 AJI when refined with point and box at the
scale read from their own sizes, 0.006 with the point alone at the automatic scale, and none
with repair; a threshold's labels gained 0.02 without repair and 0.17 with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from sac.core.errors import ConfigError
from sac.core.images import as_model_rgb
from sac.core.labels import InstanceMask, largest_component
from sac.core.resample import resample_labels
from sac.pipeline.decode import decode_each, encoded_tiles
from sac.pipeline.nuclei import detect
from sac.pipeline.prompts import PromptSet
from sac.pipeline.regroup import regroup

if TYPE_CHECKING:
    from sac.pipeline.segmenter import Segmenter

RefinePrompt = Literal["point", "box", "both"]
REFINE_PROMPTS: tuple[RefinePrompt, ...] = ("point", "box", "both")


#: the overlap a new mask needs with the old outline, with and without ``repair`` (a
#: regrouped outline is a threshold's pixels, a looser guide to the nucleus)
MIN_IOU = {True: 0.1, False: 0.3}


@dataclass(frozen=True)
class RefineSettings:
    """How each given nucleus prompts SAM and when its new mask is kept; ``min_iou`` None
    takes :data:`MIN_IOU` for the mode."""

    prompt: RefinePrompt = "point"
    neighbour_negatives: int = 0  # nearest neighbours' centres as negative points
    min_iou: float | None = None  # the new mask must overlap the old this much (same nucleus)
    scale: float | None = None  # None: the model's automatic scale for the image
    repair: bool = True  # regroup by the model's detections first (split, join, drop)

    def __post_init__(self) -> None:
        if self.min_iou is None:
            object.__setattr__(self, "min_iou", MIN_IOU[self.repair])
        if self.prompt not in REFINE_PROMPTS:
            raise ConfigError(f"refine prompt must be one of {REFINE_PROMPTS}, "
                              f"got {self.prompt!r}")
        if not 0 <= self.neighbour_negatives <= 16:
            raise ConfigError("neighbour negatives must be between 0 and 16")
        if not 0 <= (self.min_iou or 0) <= 1:
            raise ConfigError("min_iou must be between 0 and 1")
        if self.scale is not None and not 0.05 <= self.scale <= 20:
            raise ConfigError("the refine scale must be between 0.05 and 20")


@dataclass
class RefineResult:
    """The refined labels and what happened to the nuclei. Ids are the given ones; with
    ``repair``, a split nucleus's other parts are numbered after the largest given id."""

    labels: np.ndarray
    scores: dict[int, float]  # SAM's predicted quality of each new mask
    scale: float  # the resampling the nuclei were decoded at
    nuclei: int = 0
    changed: int = 0  # nuclei whose pixels differ from the given ones
    kept: dict[str, int] = field(default_factory=dict)  # outlines kept, by reason
    #: with repair: given nuclei that came out split (as several nuclei), joined (into another
    #: given nucleus's) or dropped (no nucleus there)
    repaired: dict[str, int] | None = None

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.kept.items()) if n)
        kept = sum(self.kept.values())
        repair = "" if self.repaired is None else (
            "; repaired by the model's detections: " + ", ".join(
                f"{n} {what}" for what, n in self.repaired.items()) + " of those given"
            + f"; {len(np.unique(self.labels)) - 1} nuclei now")
        return (f"{self.changed} of {self.nuclei} nuclei changed; {kept} kept as given"
                + (f" ({reasons})" if reasons else "") + repair)


def refine_labels(segmenter: Segmenter, image: np.ndarray, labels: np.ndarray,
                  settings: RefineSettings | None = None) -> RefineResult:
    """SAM's masks for the nuclei of ``labels`` on ``image`` (see the module docstring)."""
    settings = settings or RefineSettings()
    rgb0 = as_model_rgb(image, "image")
    shape0 = rgb0.shape[:2]
    labels = np.asarray(labels)
    if labels.shape != shape0:
        raise ConfigError(f"labels {labels.shape} do not match the image {shape0}")
    given = labels.astype(np.uint32, copy=False)
    ids = np.flatnonzero(np.bincount(given.ravel())[1:]) + 1
    ids_given = ids
    result = RefineResult(given.copy(), {}, settings.scale or float(segmenter.config.input_scale),
                          nuclei=len(ids))
    if not len(ids):
        return result
    rgb, maps, size = segmenter.scaled_maps(rgb0, settings.scale)
    result.scale = size.scale
    if settings.repair:
        grouped = regroup(given, resample_labels(detect(maps, segmenter.thresholds), shape0))
        labels = grouped.labels
        ids = np.flatnonzero(np.bincount(labels.ravel())[1:]) + 1
        if not len(ids):  # nothing the model calls a nucleus
            result.labels = labels
            result.repaired = _outcome(given, labels)
            result.changed = result.nuclei
            return result
    else:
        labels = given
    up = (shape0[0] / rgb.shape[0], shape0[1] / rgb.shape[1])
    boxes = ndi.find_objects(labels)
    inside = np.array([_deepest(labels, int(k), boxes[k - 1]) for k in ids], np.float64)  # y, x
    sets, ext = _prompt_sets(ids, boxes, inside, up, settings)
    masks: list[InstanceMask | None] = [None] * len(ids)
    for tile in encoded_tiles(segmenter.predictor, rgb, ext, segmenter.tile_size,
                              segmenter.overlap):
        got = decode_each(segmenter.predictor, [sets[i] for i in tile.chosen], ext[tile.chosen],
                          tile.offset, segmenter.options.decode_window,
                          segmenter.options.batch_size, up,
                          segmenter.thresholds.mask_logit)
        for i, m in zip(tile.chosen, got, strict=True):
            masks[int(i)] = m
    assert settings.min_iou is not None
    th = segmenter.thresholds
    _compose(result, labels, ids, boxes, inside, masks, th.min_score, settings.min_iou,
             th.min_visible if settings.repair else None, int(given.max()))
    if settings.repair:
        result.repaired = _outcome(given, result.labels)
    diff = result.labels != given  # given nuclei whose pixels moved (new parts: "split")
    result.changed = int(np.count_nonzero(np.intersect1d(
        np.union1d(result.labels[diff], given[diff]), ids_given)))
    return result


def _deepest(labels: np.ndarray, k: int, box: tuple[slice, slice]) -> tuple[float, float]:
    """The pixel (y, x) of nucleus ``k`` furthest from its edge: inside it whatever its shape."""
    own = np.pad(labels[box] == k, 1)
    dist = ndi.distance_transform_edt(own)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(box[0].start + y), float(box[1].start + x)


def _prompt_sets(ids: np.ndarray, boxes: list, inside: np.ndarray, up: tuple[float, float],
                 settings: RefineSettings) -> tuple[list[PromptSet], np.ndarray]:
    """One prompt set per nucleus and the extent its window must cover, in model pixels."""
    sy, sx = 1 / up[0], 1 / up[1]
    centres = inside[:, ::-1] * [sx, sy]  # (x, y) model pixels
    tree = cKDTree(centres) if settings.neighbour_negatives else None
    sets, ext = [], []
    for i, k in enumerate(ids):
        ys, xs = boxes[k - 1]
        box = np.array([xs.start * sx, ys.start * sy, (xs.stop - 1) * sx, (ys.stop - 1) * sy],
                       np.float32)
        size = max(box[2] - box[0], box[3] - box[1]) + 1
        points, point_labels = centres[i : i + 1], [1]
        if tree is not None and len(ids) > 1:
            n = min(settings.neighbour_negatives, len(ids) - 1)
            dist, near = tree.query(centres[i], k=n + 1)
            near = [int(j) for d, j in zip(np.atleast_1d(dist), np.atleast_1d(near), strict=True)
                    if j != i and d <= 1.5 * size]
            points = np.concatenate([points, centres[near]])
            point_labels = point_labels + [0] * len(near)
        use_point = settings.prompt != "box"
        sets.append(PromptSet(
            points=np.asarray(points if use_point else points[1:], np.float32).reshape(-1, 2),
            labels=np.asarray(point_labels if use_point else point_labels[1:], np.int64),
            box=box if settings.prompt != "point" else None, instance=int(k)))
        pad = max(4.0, 0.5 * size)
        ext.append(box + np.array([-pad, -pad, pad, pad], np.float32))
    return sets, np.array(ext, np.float32)


def _compose(result: RefineResult, labels: np.ndarray, ids: np.ndarray, boxes: list,
             inside: np.ndarray, masks: list[InstanceMask | None], min_score: float,
             min_iou: float, min_visible: float | None = None, last_given: int = 0) -> None:
    """Place the accepted new masks (surest first) around the outlines kept as given. With
    ``min_visible`` (repairing), a mask with less than that share of it left by surer ones is
    the same nucleus found twice and is dropped, as the segmentation's merge does (ids above
    ``last_given`` are new parts); without it (the given objects kept), no mask takes pixels
    of another given nucleus."""
    shape = labels.shape
    out = np.zeros(shape, np.uint32)
    kept = {"empty": 0, "low score": 0, "moved": 0, "lost in overlaps": 0}
    accepted: list[tuple[float, int, InstanceMask]] = []
    for i, k in enumerate(ids):
        m = masks[i]
        reason = _rejection(m, labels, int(k), boxes[k - 1], inside[i], min_score, min_iou,
                            min_visible is not None)
        if reason:
            kept[reason] += 1
            out[boxes[k - 1]][labels[boxes[k - 1]] == k] = k
        else:  # one piece: SAM's stray blobs on other nuclei must not hole them
            assert m is not None
            mask = m.mask if min_visible is not None else _own_or_free(m, labels, int(k))
            accepted.append((m.score, int(k), InstanceMask(m.y0, m.x0, largest_component(mask),
                                                           m.score)))
    placed: dict[int, InstanceMask] = {}
    for _, k, m in sorted(accepted, key=lambda a: -a[0]):
        ys, xs, crop = _clip(m, shape)
        view = out[ys, xs]
        free = crop & (view == 0)
        if min_visible is not None and free.sum() < min_visible * crop.sum():
            _hand_over(out, placed, crop & (view != 0), view, k, last_given)
            continue  # its nucleus is already there
        view[free] = k
        placed[k] = m
    for k, m in placed.items():  # one piece per nucleus; a nucleus left with none is put back
        ys, xs, _ = _clip(m, shape)
        view = out[ys, xs]
        own = view == k
        if own.any():
            view[own & ~largest_component(own)] = 0
            result.scores[k] = m.score
        else:
            kept["lost in overlaps"] += 1
            old = out[boxes[k - 1]]
            old[(labels[boxes[k - 1]] == k) & (old == 0)] = k
    result.labels = out
    result.kept = kept


def _rejection(m: InstanceMask | None, labels: np.ndarray, k: int, box: tuple[slice, slice],
               point: np.ndarray, min_score: float, min_iou: float, grown: bool = False
               ) -> str:
    """Why SAM's mask for nucleus ``k`` is not taken ("" when it is). With ``grown``
    (repairing), a mask that holds most of the old outline is taken whatever their overlap:
    a part of a nucleus grown to the whole of it."""
    if m is None or not m.mask.any():
        return "empty"
    if m.score < min_score:
        return "low score"
    y, x = int(point[0]) - m.y0, int(point[1]) - m.x0
    holds = 0 <= y < m.mask.shape[0] and 0 <= x < m.mask.shape[1] and m.mask[y, x]
    ys, xs, crop = _clip(m, labels.shape)
    inter = int((crop & (labels[ys, xs] == k)).sum())
    area = int((labels[box] == k).sum())
    union = area + int(m.mask.sum()) - inter
    same = inter / union >= min_iou or (grown and inter >= 0.5 * area)
    return "" if holds and same else "moved"


def _hand_over(out: np.ndarray, placed: dict[int, InstanceMask], overlap: np.ndarray,
               view: np.ndarray, k: int, last_given: int) -> None:
    """A duplicate of a given nucleus ``k`` gives its id to the new part (an id above
    ``last_given``) that found the same nucleus first: the given id survives a split undone."""
    if k > last_given or k in placed or not overlap.any():
        return
    holder = int(np.bincount(view[overlap]).argmax())
    if holder > last_given and holder in placed:
        ys, xs, _ = _clip(placed[holder], out.shape)  # its pixels lie inside its own mask
        region = out[ys, xs]
        region[region == holder] = k
        placed[k] = placed.pop(holder)


def _outcome(given: np.ndarray, out: np.ndarray) -> dict[str, int]:
    """How the given nuclei came out: split (parent of several nuclei), joined (no nucleus of
    their own, their pixels in another's) or dropped (mostly background now). A nucleus's
    parent is the given nucleus holding most of its pixels."""
    both = (given > 0) & (out > 0)
    pairs, counts = np.unique(np.stack([given[both], out[both]]), axis=1, return_counts=True)
    parent: dict[int, tuple[int, int]] = {}
    for g, o, c in zip(pairs[0].tolist(), pairs[1].tolist(), counts.tolist(), strict=True):
        if c > parent.get(o, (0, 0))[1]:
            parent[o] = (g, c)
    children = np.bincount([g for g, _ in parent.values()], minlength=int(given.max()) + 1)
    ids, areas = np.unique(given[given > 0], return_counts=True)
    covered = np.bincount(given[both], minlength=int(given.max()) + 1)[ids]
    orphan = children[ids] == 0
    return {"split": int((children[ids] > 1).sum()),
            "joined": int((orphan & (covered >= 0.5 * areas)).sum()),
            "dropped": int((orphan & (covered < 0.5 * areas)).sum())}


def _own_or_free(m: InstanceMask, labels: np.ndarray, k: int) -> np.ndarray:
    """The mask of ``m`` without the pixels of given nuclei other than ``k``."""
    ys, xs, crop = _clip(m, labels.shape)
    mask = np.zeros_like(m.mask)
    region = labels[ys, xs]
    mask[ys.start - m.y0 : ys.stop - m.y0, xs.start - m.x0 : xs.stop - m.x0] = \
        crop & ((region == 0) | (region == k))
    return mask


def _clip(m: InstanceMask, shape: tuple[int, ...]) -> tuple[slice, slice, np.ndarray]:
    """The part of a mask crop inside the image: its image slices and the cropped mask."""
    y0, x0 = max(m.y0, 0), max(m.x0, 0)
    y1, x1 = min(m.y0 + m.mask.shape[0], shape[0]), min(m.x0 + m.mask.shape[1], shape[1])
    crop = m.mask[y0 - m.y0 : max(y1, y0) - m.y0, x0 - m.x0 : max(x1, x0) - m.x0]
    return slice(y0, max(y1, y0)), slice(x0, max(x1, x0)), crop
