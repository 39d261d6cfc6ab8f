"""Promptable predictor: embed an image once, then decode any number of point/box prompt sets."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sac.core.device import autocast_context
from sac.core.errors import InputError
from sac.core.images import as_model_rgb
from sac.core.labels import InstanceMask, crop_to_content
from sac.modeling import Sam
from sac.modeling.mask_decoder import upscale_logits
from sac.modeling.sam import window_origins, window_sizes
from sac.sam.backbones import BackboneSpec
from sac.sam.runtime import make_encoder, resolve_runtime
from sac.sam.transforms import Geometry, boxes_to_model, prepare_batch, to_model_coords


@dataclass
class Prediction:
    """Masks at the original image size and the decoder's quality estimates."""

    masks: np.ndarray  # (N, K, H, W) bool
    iou: np.ndarray  # (N, K) predicted IoU
    low_res_logits: np.ndarray  # (N, K, 4h, 4w) logits in the model-input frame


class EmbeddingCache:
    """Image embeddings kept across :meth:`SamPredictor.set_image` calls, keyed by the exact
    pre-processed input, least recently used dropped first beyond ``max_bytes``.

    For work that segments the same images many times with different post-processing
    settings (``sac tune``): the encoder, most of the cost, then runs once per image."""

    def __init__(self, max_bytes: int = 4 * 2**30) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self._items: OrderedDict[str, tuple[torch.Tensor, Geometry]] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def key(model: Sam, batch: torch.Tensor, bf16: bool) -> str:
        """A digest of the encoder's input, with the model object and the precision."""
        data = batch.detach().cpu().contiguous().numpy().tobytes()
        digest = hashlib.blake2b(data, digest_size=20).hexdigest()
        return f"{id(model)}:{tuple(batch.shape)}:{digest}:{'bf16' if bf16 else 'fp32'}"

    def get(self, key: str) -> tuple[torch.Tensor, Geometry] | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return item

    def put(self, key: str, emb: torch.Tensor, geo: Geometry) -> None:
        size = emb.numel() * emb.element_size()
        if key in self._items or size > self.max_bytes:
            return
        self._items[key] = (emb, geo)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (old, _) = self._items.popitem(last=False)
            self._bytes -= old.numel() * old.element_size()

    def __len__(self) -> int:
        return len(self._items)


class SamPredictor:
    """Cache one image's embedding and answer prompts in the original image's pixel frame."""

    def __init__(self, model: Sam, spec: BackboneSpec, bf16: bool = False,
                 cache: EmbeddingCache | None = None, runtime: str = "torch") -> None:
        """``cache``: embeddings shared across images and predictors (see
        :class:`EmbeddingCache`); without it each :meth:`set_image` runs the encoder.
        ``runtime``: where the image encoder runs (:data:`sac.sam.runtime.RUNTIMES`)."""
        self.model = model.eval()
        self.spec = spec
        self.bf16 = bf16
        self.cache = cache
        self.device = next(model.parameters()).device
        self.runtime = resolve_runtime(runtime, self.device)
        self.encoder = make_encoder(self.runtime, self.model, self.device)
        self.embedding: torch.Tensor | None = None
        self.geometry: Geometry | None = None

    @torch.no_grad()
    def set_image(
        self, image: np.ndarray, source: str = "image", normalized: bool = False,
        upscale: bool = True, input_size: int | None = None,
    ) -> None:
        """Validate, pre-process and embed ``image`` (any size; gray, RGB or RGBA).

        ``normalized=True`` takes a float (H, W, 3) image already in [0, 1] as is (a tile of an
        image normalised once as a whole); ``upscale=False`` pads a small image instead of
        enlarging it. ``input_size`` (a multiple of ``self.encoder.multiple``, at least the
        model's input size) embeds the image padded to that square, at its own scale, in one
        pass: a big tile whose nuclei are then decoded on windows (:meth:`predict_instances`
        only).
        """
        size = self.spec.image_size
        if input_size is not None:
            step = self.encoder.multiple
            if input_size < size or input_size % step:
                raise ValueError(f"input_size must be a multiple of {step} >= {size}; got "
                                 f"{input_size}")
            size, upscale = input_size, False
        rgb = as_model_rgb(image, source, normalized)
        batch, geos = prepare_batch([rgb], size, self.spec.normalization, upscale)
        key = ""
        if self.cache is not None:
            key = EmbeddingCache.key(self.model, batch, self.bf16) + ":" + self.runtime
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            self.embedding, self.geometry = hit
            return
        self.embedding = self.encoder(batch.to(self.device), self.bf16)
        self.geometry = geos[0]
        if self.cache is not None:
            self.cache.put(key, self.embedding, self.geometry)

    @property
    def native_grid(self) -> int:
        """Side of the embedding grid of a model-sized input (the decoder's own grid)."""
        return int(self.model.prompt_encoder.image_embedding_size[0])

    def _prompt_tensors(
        self,
        pts: np.ndarray | None,
        lbl: np.ndarray | None,
        bxs: np.ndarray | None,
        sl: slice | np.ndarray,
        geo: Geometry,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """One batch of prompts as tensors in the model-input frame on the model's device."""
        p = l_ = b = None
        if pts is not None and lbl is not None:
            p = torch.from_numpy(to_model_coords(pts[sl], geo)).to(self.device)
            l_ = torch.from_numpy(lbl[sl]).to(self.device)
        if bxs is not None:
            b = torch.from_numpy(boxes_to_model(bxs[sl], geo)).to(self.device)
        return p, l_, b

    def _require_image(self) -> tuple[torch.Tensor, Geometry]:
        if self.embedding is None or self.geometry is None:
            raise RuntimeError("call set_image() before predict()")
        return self.embedding, self.geometry

    @torch.no_grad()
    def predict(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        multimask: bool = False,
        batch_size: int = 64,
    ) -> Prediction:
        """Decode N prompt sets.

        ``points`` (N, P, 2) as ``(x, y)`` with ``labels`` (N, P) (1 positive, 0 negative),
        and/or ``boxes`` (N, 4) as ``x0, y0, x1, y1``, all in original-image pixels. A single
        set may drop the leading N axis. Sets are decoded ``batch_size`` at a time.
        """
        emb, geo = self._require_image()
        if emb.shape[-1] != self.native_grid:
            raise RuntimeError("whole-embedding decoding needs a model-sized input; this "
                               "image was embedded at input_size > the model's: use "
                               "predict_instances")
        pts, lbl, bxs = _normalise_prompts(points, labels, boxes)
        n = len(pts) if pts is not None else len(bxs)
        masks, ious, lows = [], [], []
        for start in range(0, n, batch_size):
            p, l_, b = self._prompt_tensors(pts, lbl, bxs, slice(start, start + batch_size), geo)
            with autocast_context(self.device, self.bf16):
                low, iou = self.model.decode(emb, p, l_, b, multimask=multimask)
            low = low.float()
            full = upscale_logits(low, geo.input_size, geo.resized, geo.original)
            masks.append((full > 0).cpu().numpy())
            ious.append(iou.float().cpu().numpy())
            lows.append(low.cpu().numpy())
        return Prediction(np.concatenate(masks), np.concatenate(ious), np.concatenate(lows))

    @torch.no_grad()
    def predict_instances(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        window: int = 32,
        batch_size: int = 64,
        extents: np.ndarray | None = None,
        offset: tuple[float, float] = (0.0, 0.0),
        upsample: tuple[float, float] = (1.0, 1.0),
        threshold: float = 0.0,
    ) -> list[InstanceMask | None]:
        """One mask crop per prompt set, decoded on a window of the embedding around it.

        Much faster than :meth:`predict` for small objects such as nuclei (see
        :meth:`Sam.decode_windows`); masks come back as crops in original-image pixels,
        ``None`` where a mask is empty. Without ``extents`` every window is ``window`` tokens,
        centred on the box (or the first positive point). ``extents`` (N, 4) ``x0, y0, x1, y1``
        are the regions each mask must fit in (e.g. detected nuclei): windows are centred on
        them and grown beyond ``window`` where an object needs it.

        ``offset`` ``(x, y)`` is added to the crops' origins (e.g. a tile's place in a larger
        image) and ``upsample`` ``(fy, fx)`` then scales them: the decoder's low-resolution
        logits are interpolated straight to that finer grid before thresholding, so masks
        for an image that was shrunk for the model come back with full-resolution edges.
        ``threshold`` is the logit above which a pixel is in a mask (SAM's own: 0).

        On an embedding of a larger input (``set_image(input_size=...)``) each window is
        decoded as if it sat in the middle of a model-sized tile: the positional encoding of
        that place, the prompts shifted to match; windows are at most the model's grid.
        """
        if min(upsample) <= 0:
            raise InputError(f"upsample factors must be > 0; got {upsample}")
        emb, geo = self._require_image()
        pts, lbl, bxs = _normalise_prompts(points, labels, boxes)
        grid, native = emb.shape[-1], self.native_grid
        stride = geo.input_size / grid  # input pixels per token
        n = len(pts) if pts is not None else len(bxs)
        if extents is not None:
            ext = torch.from_numpy(boxes_to_model(np.asarray(extents, np.float32).reshape(n, 4),
                                                  geo))
            sizes = window_sizes((ext[:, 2:] - ext[:, :2]).amax(1) + 1, stride, window,
                                 min(grid, native))
            centres_all = (ext[:, :2] + ext[:, 2:]) / 2
        else:
            sizes = torch.full((n,), min(window, grid, native), dtype=torch.long)
            centres_all = None
        out: list[InstanceMask | None] = [None] * n
        for size in torch.unique(sizes).tolist():
            idx = np.flatnonzero((sizes == size).numpy())
            for start in range(0, len(idx), batch_size):
                sel = idx[start : start + batch_size]
                p, l_, b = self._prompt_tensors(pts, lbl, bxs, sel, geo)
                if centres_all is not None:
                    centres = centres_all[sel].to(self.device)
                elif b is not None:
                    centres = (b[:, :2] + b[:, 2:]) / 2
                else:  # the first positive point of each set
                    centres = p[torch.arange(len(p)), (l_ == 1).long().argmax(1)]
                origins = window_origins(centres, size, grid, stride)
                pe_origins = None
                if grid != native:  # a big tile: each window in a virtual model-sized tile
                    pe_origins = torch.full_like(origins, (native - size) // 2)
                    shift = ((origins - pe_origins) * stride).flip(1).to(torch.float32)
                    p = p - shift[:, None, :] if p is not None else None
                    b = b - shift.repeat(1, 2) if b is not None else None
                with autocast_context(self.device, self.bf16):
                    low, iou = self.model.decode_windows(emb, origins, size, p, l_, b,
                                                         pe_origins=pe_origins)
                masks = _window_masks(low[:, 0].float(), iou[:, 0].float(), origins, stride, geo,
                                      offset, upsample, threshold)
                for k, m in zip(sel.tolist(), masks, strict=True):
                    out[k] = m
        return out


def _window_masks(
    logits: torch.Tensor, iou: torch.Tensor, origins: torch.Tensor, stride: float, geo: Geometry,
    offset: tuple[float, float] = (0.0, 0.0), upsample: tuple[float, float] = (1.0, 1.0),
    threshold: float = 0.0,
) -> list[InstanceMask | None]:
    """Window logits (B, h, w) to mask crops in original-image pixels, shifted by ``offset``
    (x, y), scaled by ``upsample`` (fy, fx) and cut at logit ``threshold``; see
    :meth:`SamPredictor.predict_instances`."""
    sy, sx = geo.scale
    (ox, oy), (fy, fx) = offset, upsample
    side = round(stride * logits.shape[-1] / 4)  # window side in model-input pixels
    out: list[InstanceMask | None] = []
    for k in range(logits.shape[0]):
        y0_in, x0_in = (origins[k] * stride).tolist()
        # window in the model-input frame, limited to the resized image (not the padding)
        h_in = max(0, min(side, geo.resized[0] - int(y0_in)))
        w_in = max(0, min(side, geo.resized[1] - int(x0_in)))
        if h_in == 0 or w_in == 0:
            out.append(None)
            continue
        x = logits[k][None, None]
        if x.shape[-1] != side:
            x = F.interpolate(x, (side, side), mode="bilinear", align_corners=False)
        x = x[..., :h_in, :w_in]
        top, left = y0_in / sy + oy, x0_in / sx + ox  # in the caller's frame
        y0, x0 = round(top * fy), round(left * fx)
        h = round((top + h_in / sy) * fy) - y0
        w = round((left + w_in / sx) * fx) - x0
        if h <= 0 or w <= 0:
            out.append(None)
            continue
        if (h, w) != (h_in, w_in):
            x = F.interpolate(x, (h, w), mode="bilinear", align_corners=False)
        out.append(crop_to_content((x[0, 0] > threshold).cpu().numpy(), int(y0), int(x0),
                                   float(iou[k])))
    return out


def _normalise_prompts(
    points: np.ndarray | None, labels: np.ndarray | None, boxes: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Check prompt shapes and add the leading N axis to single prompt sets."""
    if points is None and boxes is None:
        raise InputError("give point prompts, box prompts, or both")
    pts = lbl = bxs = None
    if points is not None:
        if labels is None:
            raise InputError("point prompts need labels (1 = positive, 0 = negative)")
        pts = np.asarray(points, dtype=np.float32)
        lbl = np.asarray(labels, dtype=np.int64)
        if pts.ndim == 2:
            pts, lbl = pts[None], lbl[None]
        if pts.ndim != 3 or pts.shape[-1] != 2 or lbl.shape != pts.shape[:2]:
            raise InputError(
                f"points must be (N, P, 2) with labels (N, P); got {pts.shape} and {lbl.shape}"
            )
        if not np.isin(lbl, (-1, 0, 1)).all():
            raise InputError("point labels must be 1 (positive) or 0 (negative); -1 marks "
                             "padding in sets with fewer points")
    if boxes is not None:
        bxs = np.asarray(boxes, dtype=np.float32)
        if bxs.ndim == 1:
            bxs = bxs[None]
        if bxs.ndim != 2 or bxs.shape[1] != 4:
            raise InputError(f"boxes must be (N, 4) as x0, y0, x1, y1; got {bxs.shape}")
    if pts is not None and bxs is not None and len(pts) != len(bxs):
        raise InputError(f"{len(pts)} point sets but {len(bxs)} boxes; give one box per set")
    return pts, lbl, bxs
