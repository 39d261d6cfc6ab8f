"""Click-by-click correction of instance labels, fast enough for a viewer.

A positive click on background asks SAM for the nucleus there, prompted as the expert-prompt
path prompts an added nucleus (:func:`sac.pipeline.expert.apply_expert`: a positive point,
negatives on the neighbouring nuclei, a window sized for the model's nuclei); the mask takes
the free pixels only. A positive click inside a labelled nucleus but off its core says "this
is another nucleus" (touching nuclei merged into one): SAM's mask for the click, where it
leaves the labelled nucleus's core out, becomes a new nucleus, taking the merged one's pixels
nearer the click than that core. A negative click on a nucleus removes it when it falls in the
nucleus's core; off the core (a wrong lobe, a spill into the background) the nucleus is
decoded again from its own centre with the click as a negative, and keeps the new mask if it
drops the click but keeps at least half its area (else it is removed).

Each SAM tile's embedding is computed once (at the first click in it, or all at once by
:meth:`Corrector.embed_all`) and cached by image content, model and scale
(:data:`EMBEDDINGS`), so clicks only run the small mask decoder.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage as ndi

from sac.core.images import as_model_rgb
from sac.core.labels import crop_to_content, innermost_pixel
from sac.core.resample import resample_image
from sac.core.tiles import owned_tiles

if TYPE_CHECKING:
    from sac.pipeline.segmenter import Segmenter
from sac.pipeline.decode import decode_sets
from sac.pipeline.prompts import PromptSet

#: (image digest, model id, scale, tile index) -> (embedding, geometry); least recent out
EMBEDDINGS: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
MAX_CACHED = 64
CORE = 0.5  # a negative click this close to a nucleus's centre (share of its radius) removes it
KEEP = 0.5  # a re-decoded nucleus must keep this share of its area, else it is removed


def image_digest(rgb: np.ndarray) -> str:
    """A short content hash of an image array (the embedding cache key)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str((rgb.shape, rgb.dtype)).encode())
    h.update(np.ascontiguousarray(rgb).data)
    return h.hexdigest()


class Corrector:
    """Edits ``labels`` (input-image pixels) of ``image`` by clicks; see the module docstring.

    ``scale`` is the resampling the segmentation used (``result.size.scale``), so clicks are
    decoded at the scale the nuclei were found at. ``neighbour_negatives``: how many labelled
    neighbours an added nucleus gets as negative points (None: as many as the model's
    instance prompt sets).
    """

    def __init__(self, segmenter: Segmenter, image: np.ndarray, labels: np.ndarray,
                 scale: float | None = None, neighbour_negatives: int | None = None) -> None:
        if neighbour_negatives is not None and neighbour_negatives < 0:
            raise ValueError(f"neighbour_negatives must be >= 0, got {neighbour_negatives}")
        self.seg = segmenter
        rgb0 = as_model_rgb(image, "image")
        self.shape0 = rgb0.shape[:2]
        if labels.shape != self.shape0:
            raise ValueError(f"labels {labels.shape} do not match the image {self.shape0}")
        self.labels = np.asarray(labels).astype(np.uint32, copy=True)
        self.scale = float(segmenter.config.input_scale if scale is None else scale)
        self.rgb = resample_image(rgb0, self.scale)
        self.up = (self.shape0[0] / self.rgb.shape[0], self.shape0[1] / self.rgb.shape[1])
        self.tiles = owned_tiles(self.rgb.shape[:2], segmenter.sam_tile, segmenter.overlap)
        self.key = (image_digest(rgb0), id(segmenter.model), round(self.scale, 6))
        d = segmenter.config.nucleus_diameter
        self.radius = 0.5 * (d if d else 2 * self._median_radius())  # model pixels
        self.encoded = 0  # tiles embedded by this corrector (not from the cache)
        self.neighbour_negatives = (segmenter.config.prompts.neighbour_negatives
                                    if neighbour_negatives is None else neighbour_negatives)

    def _median_radius(self) -> float:
        areas = np.bincount(self.labels.ravel())[1:]
        areas = areas[areas > 0] / (self.up[0] * self.up[1])
        return float(np.sqrt(np.median(areas) / np.pi)) if areas.size else 8.0

    def embed_all(self) -> int:
        """Embed every SAM tile of the image now (cached), so that no later click waits for
        the encoder; returns how many tiles had to be embedded."""
        before = self.encoded
        for o in self.tiles:
            ys, xs = o.image
            self._embed(np.array([(xs.start + xs.stop - 1) / 2, (ys.start + ys.stop - 1) / 2],
                                 np.float32))
        return self.encoded - before

    # --- clicks --------------------------------------------------------------------------
    def add(self, x: float, y: float) -> int:
        """A positive click at input pixel (x, y): the id of the nucleus added, split off a
        labelled one, or already there (a click on a nucleus's core, or one SAM cannot tell
        apart from it); 0 if SAM finds none on background."""
        r, c = self._pixel(x, y)
        k = int(self.labels[r, c])
        core = self._core(k) if k else None
        if core is not None and np.hypot(core[0] - r, core[1] - c) <= CORE * core[2]:
            return k  # on the nucleus itself
        mask = self._decode((x, y), self._neighbour_negatives(x, y, skip=k))
        if mask is None or not mask[r, c]:
            return k
        free = self.labels == 0
        if core is not None:  # split: SAM must leave the old core out; nearer pixels move
            cy, cx, _ = core
            if mask[cy, cx]:
                return k
            ys, xs = np.nonzero(self.labels == k)  # its pixels only, not the whole image
            nearer = np.hypot(ys - r, xs - c) < np.hypot(ys - cy, xs - cx)
            free[ys[nearer], xs[nearer]] = True
        new = int(self.labels.max()) + 1
        self.labels[mask & free] = new
        return new

    def remove(self, x: float, y: float) -> int:
        """A negative click at (x, y): the id of the nucleus removed or trimmed, 0 if the
        click is on background."""
        r, c = self._pixel(x, y)
        k = int(self.labels[r, c])
        if not k:
            return 0
        own = self.labels == k
        cy, cx, depth = self._core(k)
        if np.hypot(cy - r, cx - c) <= CORE * depth:  # in the core: the nucleus goes
            self.labels[own] = 0
            return k
        mask = self._decode((cx, cy), np.array([[x, y]], np.float32))
        self.labels[own] = 0
        if mask is not None and not mask[r, c] and (mask & own).sum() >= KEEP * own.sum():
            self.labels[mask & (own | (self.labels == 0))] = k
        return k

    # --- helpers -------------------------------------------------------------------------
    def _core(self, k: int) -> tuple[int, int, float]:
        """(row, col) of nucleus ``k``'s pixel farthest from its border, and that distance."""
        box = crop_to_content(self.labels == k)  # the distance transform on its box only
        assert box is not None
        r, c, depth = innermost_pixel(box.mask)
        return box.y0 + r, box.x0 + c, depth

    def _pixel(self, x: float, y: float) -> tuple[int, int]:
        h, w = self.shape0
        if not (0 <= x < w and 0 <= y < h):
            raise ValueError(f"click ({x:.1f}, {y:.1f}) is outside the image ({w} x {h})")
        return int(y), int(x)

    def _neighbour_negatives(self, x: float, y: float, skip: int = 0) -> np.ndarray:
        """Centres (input pixels) of the nearest labelled nuclei within reach of the new one,
        as many as :attr:`neighbour_negatives`, nucleus ``skip`` left out (the one a click
        splits: its centre may lie between the nuclei it merged)."""
        n = self.neighbour_negatives
        ids = np.unique(self.labels)[1:]
        ids = ids[ids != skip]
        if not n or not ids.size:
            return np.zeros((0, 2), np.float32)
        cen = np.array(ndi.center_of_mass(np.ones_like(self.labels), self.labels, ids))
        xy = cen[:, ::-1].astype(np.float32)
        d = np.hypot(xy[:, 0] - x, xy[:, 1] - y)
        reach = 4 * self.radius * max(self.up)
        near = np.argsort(d)[:n]
        return xy[near[d[near] <= reach]]

    def _decode(self, positive: tuple[float, float], negatives: np.ndarray
                ) -> np.ndarray | None:
        """SAM's mask (input pixels, full image) for one positive and its negatives."""
        sx, sy = 1 / self.up[1], 1 / self.up[0]
        pos = np.array([[positive[0] * sx, positive[1] * sy]], np.float32)
        neg = np.asarray(negatives, np.float32).reshape(-1, 2) * [sx, sy]
        points = np.concatenate([pos, neg]).astype(np.float32)
        labels = np.array([1] + [0] * len(neg), np.int64)
        rad = 1.5 * self.radius
        ext = np.array([[pos[0, 0] - rad, pos[0, 1] - rad, pos[0, 0] + rad, pos[0, 1] + rad]],
                       np.float32)
        offset = self._embed(pos[0])
        up = (1.0, 1.0) if self.seg.options.mask_resolution == "model" else self.up
        masks = decode_sets(self.seg.predictor, [PromptSet(points, labels)], ext, offset,
                            self.seg.options.decode_window, 1, up,
                            self.seg.thresholds.mask_logit)
        if not masks or masks[0].score < self.seg.thresholds.min_score:
            return None
        m = masks[0]
        out = np.zeros(self.shape0, bool)
        y0, x0 = m.y0, m.x0
        h, w = m.mask.shape
        ys, xs = slice(max(y0, 0), min(y0 + h, self.shape0[0])), \
            slice(max(x0, 0), min(x0 + w, self.shape0[1]))
        out[ys, xs] = m.mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        return out

    def _embed(self, xy: np.ndarray) -> np.ndarray:
        """Load the embedding of the tile owning model pixel ``xy`` into the predictor (from
        the cache or by encoding it); returns the tile's (x, y) offset."""
        r, c = int(min(xy[1], self.rgb.shape[0] - 1)), int(min(xy[0], self.rgb.shape[1] - 1))
        k = next(i for i, o in enumerate(self.tiles)
                 if o.image[0].start <= r < o.image[0].stop
                 and o.image[1].start <= c < o.image[1].stop)
        ys, xs = self.tiles[k].tile.slices(self.rgb.shape[:2])
        pred = self.seg.predictor
        key = (*self.key, k)
        if key in EMBEDDINGS:
            EMBEDDINGS.move_to_end(key)
            pred.embedding, pred.geometry = EMBEDDINGS[key]
        else:
            pred.set_image(self.rgb[ys, xs], normalized=True, upscale=False)
            EMBEDDINGS[key] = (pred.embedding, pred.geometry)
            self.encoded += 1
            while len(EMBEDDINGS) > MAX_CACHED:
                EMBEDDINGS.popitem(last=False)
        return np.array([xs.start, ys.start], np.float32)
