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

from sac.core.device import use_bf16
from sac.core.errors import ConfigError, InputError
from sac.core.images import as_model_rgb, check_image
from sac.core.labels import InstanceMask, drop_missing_ids
from sac.core.resample import resample_labels
from sac.core.tiles import (
    ENCODER_MULTIPLE,
    ENCODER_TILE,
    owned_tiles,
    stitch,
)
from sac.model import SACModel, load_model
from sac.model.config import Thresholds
from sac.pipeline.choose import AUTO, AutoSegmenter
from sac.pipeline.complete import complete_from_semantic
from sac.pipeline.decode import decode_sets, encoded_tiles, encoder_tile, semantic_mask
from sac.pipeline.evidence import Evidence, drop_flat_nuclei, image_evidence
from sac.pipeline.expert import ExpertPrompts, apply_expert
from sac.pipeline.fold import fold_plan, fold_segment
from sac.pipeline.maps import GENERATOR_TILE, Maps, generator_maps
from sac.pipeline.merge import drop_off_foreground, merge_scored
from sac.pipeline.nuclei import detect, extents
from sac.pipeline.options import SegmentOptions
from sac.pipeline.prompt_sets import instance_sets
from sac.pipeline.prompts import PromptSet
from sac.pipeline.result import Clock, SegmentResult
from sac.pipeline.scale import THIN_NOTE, ScaleRequest, choose_scale, given_scale, too_thin
from sac.pipeline.size import SizeEstimate
from sac.sam.predictor import EmbeddingCache, SamPredictor

#: ``progress(stage, done, total)``, see :meth:`Segmenter.segment`
Progress = Callable[[str, int, int], None]
#: decimals of SAM's predicted quality kept in results and outputs
SCORE_DECIMALS = 4


class Segmenter:
    """Runs a :class:`SACModel` on images; see the module docstring for the steps."""

    def __init__(self, model: SACModel, options: SegmentOptions | None = None, *,
                 thresholds: Thresholds | None = None,
                 embeddings: EmbeddingCache | None = None, **changes: Any) -> None:
        """``options``: the inference settings (:class:`SegmentOptions`; default: ``sac
        segment``'s); ``changes``: some of them by name, over ``options`` (e.g.
        ``Segmenter(model, precision="bf16")``).
        ``thresholds``: detection and merge settings to use instead of the model's own
        (e.g. ``model.config.thresholds.without_fill()``); the model is left unchanged.
        ``embeddings``: SAM embeddings shared with other segmenters of the same model (for
        segmenting the same images under several settings, as ``sac tune`` does)."""
        if not isinstance(model, SACModel):
            raise ConfigError(f"Segmenter needs a SAC model (sac.load_model(name or folder)); "
                              f"got {type(model).__name__}")
        if thresholds is not None and not isinstance(thresholds, Thresholds):
            raise ConfigError(f"thresholds must be a sac.model.Thresholds; got "
                              f"{type(thresholds).__name__}")
        if options is not None and not isinstance(options, SegmentOptions):
            raise ConfigError(f"options must be a sac.SegmentOptions; got "
                              f"{type(options).__name__}")
        opts = (options or SegmentOptions()).replace(**changes)
        native = model.spec.image_size
        if opts.tile_size is not None and opts.tile_size > native and \
                opts.tile_size % ENCODER_MULTIPLE:
            raise ConfigError(f"a tile size above the model's input ({native}) must be a "
                              f"multiple of {ENCODER_MULTIPLE}; got {opts.tile_size}")
        # the encoder's tiles (one pass each, up to ENCODER_TILE px) and the model-sized
        # tiles of the paths that decode whole embeddings (the semantic mask, clicks)
        self.tile_size = opts.tile_size or max(ENCODER_TILE, native)
        self.sam_tile = min(self.tile_size, native)
        overlap = self.sam_tile // 4 if opts.overlap is None else opts.overlap
        if not 0 <= overlap < self.sam_tile // 2:
            raise ConfigError(f"overlap must be in [0, tile size / 2 = {self.sam_tile // 2}); "
                              f"got {overlap}")
        self.options = opts
        self.model = model.eval()
        self.config = model.config
        if thresholds is None:
            thresholds = model.config.thresholds
            if not opts.fill:  # for images unlike the model's training data
                thresholds = thresholds.without_fill()
        self.thresholds = thresholds
        self.overlap = overlap
        self.bf16 = use_bf16(opts.precision, model.device)
        self.predictor = SamPredictor(model.sam, model.spec, bf16=self.bf16, cache=embeddings,
                                      runtime=opts.runtime)

    def config_dict(self) -> dict[str, Any]:
        """The model config (with the thresholds used) plus the inference settings (for
        reports)."""
        used = dataclasses.replace(self.config, thresholds=self.thresholds)
        o = self.options
        return {"model": used.to_dict(), "tile_size": self.tile_size,
                "overlap": self.overlap, "precision": self.precision,
                "runtime": self.predictor.runtime, "decode_window": o.decode_window,
                "mask_resolution": o.mask_resolution, "auto_scale": o.auto_scale,
                "check_evidence": o.check_evidence, "tta": o.tta}

    @property
    def precision(self) -> str:
        """The precision in use: ``bf16`` or ``fp32``."""
        return "bf16" if self.bf16 else "fp32"

    def generator_maps(self, rgb: np.ndarray) -> Maps:
        """Stitched generator probabilities for a float (H, W, 3) image at the model's scale."""
        return generator_maps(self.model.generator, rgb, max(GENERATOR_TILE, self.sam_tile),
                              self.model.device, self.bf16, self.options.tta)

    def segment(self, image: np.ndarray, source: str = "image",
                scale: float | ScaleRequest | None = None,
                expert: ExpertPrompts | None = None, semantic: bool = False,
                normalized: bool = False, nuclei: np.ndarray | None = None,
                diameter: float | None = None, progress: Progress | None = None
                ) -> SegmentResult:
        """Instance labels (and optionally the semantic mask) for ``image`` of any size.

        ``scale``: the resampling before the model, or a :class:`ScaleRequest` (what the user
        and the file say); ``diameter``: the nucleus diameter in input pixels, which sets the
        scale that brings such nuclei to the model's training size; with neither, the scale
        is estimated from the image: :func:`sac.pipeline.scale.choose_scale` is the policy.
        ``expert`` points are in input-image pixels. The image is min-max scaled as a whole;
        ``normalized=True`` takes a float32 (H, W, 3) image already in [0, 1] as is (a
        region of a whole slide, scaled by its dtype range so that all regions match).
        ``nuclei``: instance labels at the input size (e.g. another tool's, or the ground
        truth for an upper bound) to prompt from instead of the generator's detections.
        ``progress(stage, done, total)`` hears of each step (a GUI's bar); an exception it
        raises stops the work there (cancelling), leaving nothing behind.
        """
        request = ScaleRequest.of(scale, diameter)
        given = given_scale(self.config, request)
        if expert is None and nuclei is None and not normalized:
            check_image(image, source)
            folded = self._folded(image, source, request, given.scale, semantic, progress)
            if folded is not None:
                return folded
        clock = Clock()
        t = time.perf_counter()
        rgb0 = as_model_rgb(image, source, normalized)
        guard = self.options.check_evidence and expert is None and nuclei is None
        evidence = image_evidence(image) if guard else None
        t = clock.add("preprocess", t)
        if evidence is not None and not evidence.has_structure:
            used = given.scale or self.config.input_scale
            shape0 = rgb0.shape[:2]
            return SegmentResult(np.zeros(shape0, np.uint32),
                                 np.zeros(shape0, bool) if semantic else None, {}, 0,
                                 clock.times, SizeEstimate(diameter, 0, used, given.source,
                                                           evidence.describe()))
        if progress is not None:
            progress("generator", 0, 1)
        rgb, maps, size = choose_scale(self, rgb0, request)
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
        if self.options.mask_resolution == "model":
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
        labels, scores, sem = self._at_input_size(labels, scores, sem if semantic else None,
                                                  rgb0.shape[:2], evidence)
        clock.add("postprocess", t)
        return SegmentResult(labels, sem, scores, len(sets), clock.times, size)

    def _folded(self, image: np.ndarray, source: str, request: ScaleRequest,
                given: float | None, semantic: bool, progress: Progress | None
                ) -> SegmentResult | None:
        """A long thin strip segmented folded into a near-square image (None: not a strip);
        one too thin to show whole nuclei at the model's scale, unless a scale is given."""
        guess = given or self.config.input_scale
        pieces = fold_plan(image.shape[:2], self.sam_tile / guess, self.overlap / guess)
        if not pieces:
            return None
        thin = given is None and too_thin(self.config, image.shape)
        use = ScaleRequest(scale=self.config.input_scale) if thin else request
        res = fold_segment(image, pieces, lambda im: self.segment(
            im, source, use, semantic=semantic, progress=progress))
        if thin and res.size is not None:
            note = f"{THIN_NOTE}; folded into {len(pieces)} pieces"
            res.size = dataclasses.replace(res.size, diameter=None, objects=0, source="model",
                                           note=note)
        return res

    @staticmethod
    def _at_input_size(labels: np.ndarray, scores: dict[int, float], sem: np.ndarray | None,
                       shape: tuple[int, int], evidence: Evidence | None
                       ) -> tuple[np.ndarray, dict[int, float], np.ndarray | None]:
        """Labels, scores and semantic mask at the input's ``shape``: downsampling can lose
        sub-pixel nuclei, and the evidence check drops nuclei in flat or pure-noise parts;
        the ids left are renumbered and their scores follow them."""
        n = int(labels.max()) if labels.shape != shape else None
        labels, kept = resample_labels(labels, shape), None
        if evidence is not None:
            labels, kept = drop_flat_nuclei(labels, evidence)
        elif n is not None:
            labels, kept = drop_missing_ids(labels, n)
        if kept is not None:
            scores = {i + 1: scores[int(k)] for i, k in enumerate(kept) if int(k) in scores}
        if sem is not None:
            sem = resample_labels(sem.astype(np.uint8), shape).astype(bool)
        return labels, scores, sem

    def scaled_maps(self, rgb0: np.ndarray, scale: float | ScaleRequest | None = None,
                    diameter: float | None = None) -> tuple[np.ndarray, Maps, SizeEstimate]:
        """The image resampled for the model, its generator maps, and how the scale was
        chosen (:func:`sac.pipeline.scale.choose_scale`; arguments as for :meth:`segment`)."""
        return choose_scale(self, rgb0, ScaleRequest.of(scale, diameter))

    def _decode(self, rgb: np.ndarray, maps: Maps, det: np.ndarray, sets: list[PromptSet],
                ext: np.ndarray, expert: ExpertPrompts | None, semantic: bool, clock: Clock,
                up: tuple[float, float] = (1.0, 1.0), progress: Progress | None = None,
                ) -> tuple[list[InstanceMask], np.ndarray | None]:
        """Encode each SAM tile that has work and decode its prompt sets; instance masks come
        back on the model-scale grid scaled by ``up`` (the semantic mask on the model's)."""
        shape = rgb.shape[:2]
        instances: list[InstanceMask] = []
        sem_parts: list[tuple[Any, np.ndarray]] = []
        side = encoder_tile(shape, self.tile_size, self.overlap, self.model.spec.image_size,
                            self.predictor.encoder.multiple)
        total = len(owned_tiles(shape, side, self.overlap))
        tiles = encoded_tiles(self.predictor, rgb, ext, self.tile_size, self.overlap,
                              every_tile=semantic, clock=clock)
        clicks = None if expert is None else (expert.points, expert.labels)
        for done, tile in enumerate(tiles):
            if progress is not None:
                progress("decoder", done, total)
            t = time.perf_counter()
            if tile.chosen.size:
                instances += decode_sets(self.predictor, [sets[i] for i in tile.chosen],
                                         ext[tile.chosen], tile.offset,
                                         self.options.decode_window,
                                         self.options.batch_size, up,
                                         self.thresholds.mask_logit)
            if semantic:
                mask = semantic_mask(self.predictor, det, maps, tile.region(shape),
                                     self.sam_tile, self.overlap, self.config.prompts,
                                     self.thresholds, clicks)
                full = np.zeros((side, side), bool)
                full[: mask.shape[0], : mask.shape[1]] = mask
                sem_parts.append((tile.owned, full))
            clock.add("decoder", t)
        sem = stitch(iter(sem_parts), shape, bool) if semantic else None
        return instances, sem


def load_segmenter(model: str | Path, device: str = "cpu",
                   options: SegmentOptions | None = None,
                   checkpoint: str | Path | None = None, **changes: Any
                   ) -> AnySegmenter:
    """Load a model folder or shipped model name and wrap it in a :class:`Segmenter` with
    ``options`` (and ``changes`` to them by name, e.g. ``fill=False``: no completion from the
    semantic mask, for images unlike the model's training data). ``model="auto"`` gives an
    :class:`~sac.pipeline.choose.AutoSegmenter`: per image, the shipped specialist for its
    type, each loaded with these settings on first use."""
    opts = (options or SegmentOptions()).replace(**changes)  # checked before any loading
    if str(model) == AUTO:
        return AutoSegmenter(lambda name: Segmenter(load_model(name, device, checkpoint), opts))
    return Segmenter(load_model(model, device, checkpoint), opts)


#: either kind of segmenter :func:`load_segmenter` gives
AnySegmenter = Segmenter | AutoSegmenter[Segmenter]
