"""Automatic nucleus segmentation with a trained SAC model, for images of any size.

The :class:`Segmenter` only orchestrates the stages, each in its own module, at the model's
scale (chosen per image by :mod:`sac.pipeline.size`):

1. :mod:`~sac.pipeline.maps`: the prompt generator runs over the image in large overlapping
   tiles; its maps are stitched;
2. :mod:`~sac.pipeline.nuclei`: nuclei are detected once on the whole stitched map, so no
   nucleus is split by a tile seam; :mod:`~sac.pipeline.expert` clicks add nuclei (positive)
   or remove them (negative);
3. :mod:`~sac.pipeline.prompt_sets`: each nucleus becomes a prompt set (points, box or both,
   per the model's config);
4. :mod:`~sac.pipeline.decode`: each set is decoded in the one SAM tile where it sits furthest
   from a seam, on an embedding window;
5. :mod:`~sac.pipeline.merge` and :mod:`~sac.pipeline.complete`: masks are merged into instance
   labels by SAM's predicted quality; the paper's semantic mask comes from one prompt set per
   tile holding all that tile's prompts, and may complete the labels;
6. labels come back at the input size: by default each mask's low-resolution logits are
   interpolated straight to the input image's grid before thresholding (``mask_resolution=
   "input"``), so an image shrunk for the model keeps full-resolution nucleus edges;
   ``"model"`` thresholds at the model's scale and resizes the labels (faster, blockier).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sac.core.checks import number
from sac.core.device import use_bf16
from sac.core.errors import ConfigError, InputError
from sac.core.images import as_model_rgb, check_image
from sac.core.labels import InstanceMask, drop_missing_ids
from sac.core.resample import resample_image, resample_labels
from sac.core.tiles import (
    ENCODER_MULTIPLE,
    ENCODER_TILE,
    MAX_ENCODER_TILE,
    owned_tiles,
    stitch,
)
from sac.model import SACModel, load_model
from sac.model.config import Thresholds
from sac.pipeline.complete import complete_from_semantic
from sac.pipeline.decode import DECODE_WINDOW, decode_sets, encoded_tiles, encoder_tile
from sac.pipeline.evidence import drop_flat_nuclei, image_evidence
from sac.pipeline.expert import ExpertPrompts, apply_expert
from sac.pipeline.fold import fold_plan, fold_segment
from sac.pipeline.maps import GENERATOR_TILE, TTA_CHOICES, Maps, generator_maps
from sac.pipeline.merge import drop_off_foreground, merge_scored
from sac.pipeline.nuclei import detect, extents
from sac.pipeline.prompt_sets import instance_sets, semantic_set
from sac.pipeline.prompts import PromptSet
from sac.pipeline.result import Clock, SegmentResult
from sac.pipeline.scale import estimated_scale
from sac.pipeline.size import (
    SizeEstimate,
    diameter_scale,
    head_span,
    next_scale,
)
from sac.sam.predictor import EmbeddingCache, SamPredictor

THIN_NOTE = "too thin for a size estimate (nuclei are cut by its edges): the model's scale"
MASK_RESOLUTIONS = ("input", "model")
#: ``progress(stage, done, total)``, see :meth:`Segmenter.segment`
Progress = Callable[[str, int, int], None]
#: decimals of SAM's predicted quality kept in results and outputs
SCORE_DECIMALS = 4


class Segmenter:
    """Runs a :class:`SACModel` on images; see the module docstring for the steps."""

    def __init__(self, model: SACModel, precision: str = "auto", tile_size: int | None = None,
                 overlap: int | None = None, batch_size: int = 64,
                 mask_resolution: str = "input", auto_scale: bool = True,
                 check_evidence: bool = True, thresholds: Thresholds | None = None,
                 tta: int = 1, embeddings: EmbeddingCache | None = None,
                 runtime: str = "auto", decode_window: int = DECODE_WINDOW) -> None:
        """``precision``: one of :data:`sac.core.device.PRECISIONS` (``auto``: bf16 where the
        device computes it natively, else fp32).
        ``thresholds``: detection and merge settings to use instead of the model's own
        (e.g. ``model.config.thresholds.without_fill()``); the model is left unchanged.
        ``tta``: views the generator's maps are averaged over (:data:`TTA_CHOICES`).
        ``embeddings``: SAM embeddings shared with other segmenters of the same model (for
        segmenting the same images under several settings, as ``sac tune`` does).
        ``runtime``: where the image encoder runs (:data:`sac.sam.runtime.RUNTIMES`; ``auto``:
        OpenVINO on a CPU where it is installed, else torch). ``decode_window``: the smallest
        decoder window, in embedding tokens a side (larger nuclei get larger ones)."""
        if not isinstance(model, SACModel):
            raise ConfigError(f"Segmenter needs a SAC model (sac.load_model(name or folder)); "
                              f"got {type(model).__name__}")
        if thresholds is not None and not isinstance(thresholds, Thresholds):
            raise ConfigError(f"thresholds must be a sac.model.Thresholds; got "
                              f"{type(thresholds).__name__}")
        native = model.spec.image_size
        if tile_size is not None:
            number("tile_size", tile_size, 32, MAX_ENCODER_TILE, integer=True)
            if tile_size > native and tile_size % ENCODER_MULTIPLE:
                raise ConfigError(f"a tile size above the model's input ({native}) must be a "
                                  f"multiple of {ENCODER_MULTIPLE}; got {tile_size}")
        if tta not in TTA_CHOICES:
            raise ConfigError(f"tta must be one of {TTA_CHOICES}; got {tta}")
        self.tta = tta
        if mask_resolution not in MASK_RESOLUTIONS:
            raise ConfigError(f"mask resolution must be one of {MASK_RESOLUTIONS}; got "
                              f"{mask_resolution!r}")
        self.mask_resolution = mask_resolution
        self.auto_scale = auto_scale
        self.check_evidence = check_evidence  # sac.pipeline.evidence: no nuclei from flat data
        number("batch_size", batch_size, 1, 4096, integer=True)
        number("decode_window", decode_window, 4, 64, integer=True)
        self.decode_window = decode_window
        # the encoder's tiles (one pass each, up to ENCODER_TILE px) and the model-sized
        # tiles of the paths that decode whole embeddings (the semantic mask, clicks)
        self.tile_size = tile_size or max(ENCODER_TILE, native)
        self.sam_tile = min(self.tile_size, native)
        overlap = self.sam_tile // 4 if overlap is None else overlap
        if not 0 <= overlap < self.sam_tile // 2:
            raise ConfigError(f"overlap must be in [0, tile size / 2 = {self.sam_tile // 2}); "
                              f"got {overlap}")
        self.model = model.eval()
        self.config = model.config
        self.thresholds = model.config.thresholds if thresholds is None else thresholds
        self.overlap = overlap
        self.batch_size = batch_size
        self.bf16 = use_bf16(precision, model.device)
        self.predictor = SamPredictor(model.sam, model.spec, bf16=self.bf16, cache=embeddings,
                                      runtime=runtime)

    def config_dict(self) -> dict[str, Any]:
        """The model config (with the thresholds used) plus the inference settings (for
        reports)."""
        used = dataclasses.replace(self.config, thresholds=self.thresholds)
        return {"model": used.to_dict(), "tile_size": self.tile_size,
                "overlap": self.overlap, "precision": self.precision,
                "runtime": self.predictor.runtime, "decode_window": self.decode_window,
                "mask_resolution": self.mask_resolution, "auto_scale": self.auto_scale,
                "check_evidence": self.check_evidence, "tta": self.tta}

    @property
    def precision(self) -> str:
        """The precision in use: ``bf16`` or ``fp32``."""
        return "bf16" if self.bf16 else "fp32"

    def generator_maps(self, rgb: np.ndarray) -> Maps:
        """Stitched generator probabilities for a float (H, W, 3) image at the model's scale."""
        return generator_maps(self.model.generator, rgb, max(GENERATOR_TILE, self.sam_tile),
                              self.model.device, self.bf16, self.tta)

    def segment(self, image: np.ndarray, source: str = "image", scale: float | None = None,
                expert: ExpertPrompts | None = None, semantic: bool = False,
                normalized: bool = False, nuclei: np.ndarray | None = None,
                diameter: float | None = None, progress: Progress | None = None
                ) -> SegmentResult:
        """Instance labels (and optionally the semantic mask) for ``image`` of any size.

        ``scale`` resamples the image before the model; ``diameter`` (nucleus diameter in
        input pixels) sets the scale that brings such nuclei to the model's training size;
        with neither, the scale is estimated from the image (:mod:`sac.pipeline.size`) when
        the model records its nucleus size and ``auto_scale`` is on, else the model's
        ``input_scale`` is used. ``expert`` points are in input-image pixels. The image is
        min-max scaled as a whole; ``normalized=True`` takes a float32 (H, W, 3) image
        already in [0, 1] as is (a region of a whole slide, scaled by its dtype range so that
        all regions match).
        ``nuclei``: instance labels at the input size (e.g. another tool's, or the ground
        truth for an upper bound) to prompt from instead of the generator's detections.
        ``progress(stage, done, total)`` hears of each step (a GUI's bar); an exception it
        raises stops the work there (cancelling), leaving nothing behind.
        """
        if scale is not None:
            number("scale", scale, 0.05, 20)
        if diameter is not None:
            number("diameter", diameter, 0.5, 1e4)
        if expert is None and nuclei is None and not normalized:
            guess = scale if scale is not None else self.config.input_scale
            if diameter is not None and self.config.nucleus_diameter is not None:
                guess = diameter_scale(self.config.nucleus_diameter, diameter)
            check_image(image, source)
            pieces = fold_plan(image.shape[:2], self.sam_tile / guess, self.overlap / guess)
            if pieces:  # a long thin strip: segmented folded into a near-square image
                thin = scale is None and diameter is None and self._too_thin(image.shape)
                use = self.config.input_scale if thin else scale
                res = fold_segment(image, pieces, lambda im: self.segment(
                    im, source, use, semantic=semantic, diameter=diameter, progress=progress))
                if thin and res.size is not None:
                    note = f"{THIN_NOTE}; folded into {len(pieces)} pieces"
                    res.size = dataclasses.replace(res.size, diameter=None, objects=0,
                                                   source="model", note=note)
                return res
        clock = Clock()
        t = time.perf_counter()
        rgb0 = as_model_rgb(image, source, normalized)
        guard = self.check_evidence and expert is None and nuclei is None
        evidence = image_evidence(image) if guard else None
        t = clock.add("preprocess", t)
        if evidence is not None and not evidence.has_structure:
            used, how = (scale, "scale") if scale is not None else (
                self.config.input_scale, "model")
            if diameter is not None:
                used, how = self.diameter_scale(diameter), "diameter"
            shape0 = rgb0.shape[:2]
            return SegmentResult(np.zeros(shape0, np.uint32),
                                 np.zeros(shape0, bool) if semantic else None, {}, 0,
                                 clock.times, SizeEstimate(diameter, 0, used, how,
                                                           evidence.describe()))
        if progress is not None:
            progress("generator", 0, 1)
        rgb, maps, size = self.scaled_maps(rgb0, scale, diameter)
        scale = size.scale
        shape = rgb.shape[:2]
        t = clock.add("generator", t)
        th, pc = self.thresholds, self.config.prompts
        if nuclei is None:
            det = detect(maps, th)
        elif nuclei.ndim != 2 or nuclei.shape != rgb0.shape[:2] or nuclei.dtype.kind not in "iu":
            raise InputError(f"{source}: nuclei must be integer labels of the image's size "
                             f"{rgb0.shape[:2]}; got {nuclei.dtype} {nuclei.shape}")
        else:
            det = resample_labels(nuclei, shape).astype(np.uint32)
        negatives = None  # expert background clicks, in the labels' frame
        up = (rgb0.shape[0] / shape[0], rgb0.shape[1] / shape[1])
        if self.mask_resolution == "model":
            up = (1.0, 1.0)
        out_shape = rgb0.shape[:2] if up != (1.0, 1.0) else shape
        if expert is not None:
            expert.check_inside(rgb0.shape[:2], source)
            negatives = expert.points[expert.labels == 0]
            expert = expert.scaled(scale)
            if out_shape == shape:
                negatives = expert.points[expert.labels == 0]
            det = apply_expert(det, expert)
        sets = instance_sets(det, maps, pc)
        ext = extents(det)
        t = clock.add("prompts", t)
        fill = th.fills
        instances, sem = self._decode(rgb, maps, det, sets, ext, expert, semantic or fill,
                                      clock, up, progress)
        t = time.perf_counter()
        instances = [m for m in instances if m.score >= th.min_score]
        if nuclei is None and expert is None:  # prompts a person gave are kept as they are
            instances = drop_off_foreground(instances, maps.fg, up, th.min_fg)
        area = up[0] * up[1]  # thresholds are in model pixels
        labels, ranked = merge_scored(instances, out_shape, min_area=round(th.min_area * area),
                                      min_visible=th.min_visible)
        # rounded: the last float digits depend on the thread count, and outputs must not
        scores = {i + 1: round(float(s), SCORE_DECIMALS) for i, s in enumerate(ranked.tolist())}
        if fill and sem is not None:  # added nuclei have no SAM score
            grid_sem = resample_labels(sem.astype(np.uint8), out_shape).astype(bool)
            labels, _ = complete_from_semantic(labels, grid_sem,
                                               round(th.fill_new_area * area), th.fill_attach,
                                               negatives)
        if not semantic:
            sem = None
        # downsampling can lose sub-pixel nuclei; the evidence check drops those ids too
        n = int(labels.max()) if labels.shape != rgb0.shape[:2] else None
        labels, kept = resample_labels(labels, rgb0.shape[:2]), None
        if evidence is not None:  # no nuclei in flat or pure-noise parts of the image
            labels, kept = drop_flat_nuclei(labels, evidence)
        elif n is not None:
            labels, kept = drop_missing_ids(labels, n)
        if kept is not None:
            scores = {i + 1: scores[int(k)] for i, k in enumerate(kept) if int(k) in scores}
        if sem is not None:
            sem = resample_labels(sem.astype(np.uint8), rgb0.shape[:2]).astype(bool)
        clock.add("postprocess", t)
        return SegmentResult(labels, sem, scores, len(sets), clock.times, size)

    def diameter_scale(self, diameter: float) -> float:
        """The scale that brings nuclei ``diameter`` input pixels across to the model's
        training size (:class:`ConfigError` if the model does not record that size)."""
        if self.config.nucleus_diameter is None:
            raise ConfigError("this model does not record the nucleus size it was trained on; "
                              "use --scale instead of --diameter")
        return diameter_scale(self.config.nucleus_diameter, diameter)

    def _given_scale(self, maps: Maps, scale: float, source: str, diameter: float | None
                     ) -> SizeEstimate:
        """A scale the caller chose, with what the image's own nuclei say about it: the
        estimate at that scale, and a note when the automatic scale would resample it (see
        :func:`sac.pipeline.size.next_scale`; the caller's scale still wins)."""
        model_d = self.config.nucleus_diameter
        if model_d is None:
            return SizeEstimate(diameter, 0, scale, source)
        new, d, n, _ = next_scale(model_d, scale, maps.fg >= self.thresholds.fg,
                                    self.smallest())
        note = ""
        if new is not None:
            note = (f"at this scale the nuclei look {scale / new:.2g}x the model's training "
                    f"size; the estimate would resample by {new:.3g}")
        return SizeEstimate(diameter if diameter is not None else d, n, scale, source, note)

    def smallest(self) -> float | None:
        """The low end of the model's training-size range (see :func:`next_scale`)."""
        rng = self.config.nucleus_diameter_range
        return None if rng is None else rng[0]

    def head_span(self) -> tuple[float, float] | None:
        """Where the size head's reading is trusted (:func:`sac.pipeline.size.head_span`)."""
        fit = self.config.size_head or {}
        return head_span(self.config.nucleus_diameter_range, fit.get("factors"))

    def _too_thin(self, shape: tuple[int, ...]) -> bool:
        """Whether an image is under 3 training-size nuclei across at the model's scale: its
        nuclei are cut by its edges, and their size cannot be estimated from it."""
        d = self.config.nucleus_diameter
        return d is not None and min(shape[:2]) * self.config.input_scale < 3 * d

    def scaled_maps(self, rgb0: np.ndarray, scale: float | None = None,
                    diameter: float | None = None) -> tuple[np.ndarray, Maps, SizeEstimate]:
        """The image resampled for the model, its generator maps, and how the scale was
        chosen (see :meth:`segment`)."""
        model_d = self.config.nucleus_diameter
        if scale is not None or diameter is not None:
            if diameter is not None:
                scale = self.diameter_scale(diameter)
            assert scale is not None
            rgb = resample_image(rgb0, scale)
            maps = self.generator_maps(rgb)
            source = "diameter" if diameter is not None else "scale"
            return rgb, maps, self._given_scale(maps, scale, source, diameter)
        scale = self.config.input_scale
        rgb = resample_image(rgb0, scale)
        maps = self.generator_maps(rgb)
        if model_d is None:
            return rgb, maps, SizeEstimate(None, 0, scale, "model",
                                           "the model records no nucleus size")
        if self._too_thin(rgb0.shape):
            return rgb, maps, SizeEstimate(None, 0, scale, "model", THIN_NOTE)
        if not self.auto_scale:
            est = self._given_scale(maps, scale, "model", None)
            note = "; ".join(x for x in ("automatic scale off", est.note) if x)
            return rgb, maps, dataclasses.replace(est, note=note)
        return estimated_scale(self, rgb0, rgb, maps, scale, model_d)

    def _decode(self, rgb: np.ndarray, maps: Maps, det: np.ndarray, sets: list[PromptSet],
                ext: np.ndarray, expert: ExpertPrompts | None, semantic: bool, clock: Clock,
                up: tuple[float, float] = (1.0, 1.0), progress: Progress | None = None,
                ) -> tuple[list[InstanceMask], np.ndarray | None]:
        """Encode each SAM tile that has work and decode its prompt sets; instance masks come
        back on the model-scale grid scaled by ``up`` (the semantic mask on the model's)."""
        shape = rgb.shape[:2]
        instances: list[InstanceMask] = []
        sem_parts: list[tuple[Any, np.ndarray]] = []
        # the semantic mask decodes whole embeddings: model-sized tiles
        size = self.sam_tile if semantic else self.tile_size
        side = encoder_tile(shape, size, self.overlap, self.model.spec.image_size,
                            self.predictor.encoder.multiple)
        total = len(owned_tiles(shape, side, self.overlap))
        tiles = encoded_tiles(self.predictor, rgb, ext, size, self.overlap,
                              every_tile=semantic, clock=clock)
        for done, tile in enumerate(tiles):
            if progress is not None:
                progress("decoder", done, total)
            t = time.perf_counter()
            if tile.chosen.size:
                instances += decode_sets(self.predictor, [sets[i] for i in tile.chosen],
                                         ext[tile.chosen], tile.offset,
                                         self.decode_window, self.batch_size, up,
                                         self.thresholds.mask_logit)
            if semantic:
                mask = self._decode_semantic(det, maps, tile.region(shape), expert, tile.offset)
                full = np.zeros((size, size), bool)
                full[: mask.shape[0], : mask.shape[1]] = mask
                sem_parts.append((tile.owned, full))
            clock.add("decoder", t)
        sem = stitch(iter(sem_parts), shape, bool) if semantic else None
        return instances, sem

    def _decode_semantic(self, det: np.ndarray, maps: Maps, region: tuple[slice, slice],
                         expert: ExpertPrompts | None, off: np.ndarray) -> np.ndarray:
        """The paper's output for one tile: all its prompts in one set, one mask."""
        ys, xs = region
        s = semantic_set(det[ys, xs], maps.crop(ys, xs), self.config.prompts,
                         self.thresholds)
        pts, lbl = s.points, s.labels
        if expert is not None and len(expert.points):
            local = expert.points - off
            h, w = ys.stop - ys.start, xs.stop - xs.start
            inside = (local[:, 0] >= 0) & (local[:, 1] >= 0) & (local[:, 0] < w) & \
                (local[:, 1] < h)
            pts = np.concatenate([pts, local[inside]]).astype(np.float32)
            lbl = np.concatenate([lbl, expert.labels[inside]])
        if not (lbl == 1).any():
            return np.zeros((ys.stop - ys.start, xs.stop - xs.start), bool)
        pred = self.predictor.predict(points=pts[None], labels=lbl[None])
        return pred.masks[0, 0]


def load_segmenter(model: str | Path, device: str = "cpu", precision: str = "auto",
                   checkpoint: str | Path | None = None, fill: bool = True, **kwargs: Any
                   ) -> Any:
    """Load a model folder or shipped model name and wrap it in a :class:`Segmenter`.

    ``fill=False`` switches off the completion from the semantic mask (for images unlike the
    model's training data, where that mask may spread beyond the nuclei). ``model="auto"``
    gives an :class:`~sac.pipeline.choose.AutoSegmenter`: per image, the shipped specialist
    for its type, each loaded with these settings on first use."""
    from sac.pipeline.choose import AUTO, AutoSegmenter

    if str(model) == AUTO:
        return AutoSegmenter(lambda name: load_segmenter(name, device, precision, checkpoint,
                                                         fill, **kwargs))
    sac_model = load_model(model, device, checkpoint)
    if not fill:
        kwargs["thresholds"] = sac_model.config.thresholds.without_fill()
    return Segmenter(sac_model, precision=precision, **kwargs)
