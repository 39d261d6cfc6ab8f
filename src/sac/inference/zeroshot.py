"""Zero-shot instance segmentation: classical nucleus detections become SAM box prompts.

This is the pipeline the demo runs before trained SAC models exist, and the "SAM zero-shot with
boxes" baseline later: LiteMedSAM was distilled with box prompts, so boxes work without any
fine-tuning. Large images are cut into model-sized tiles at their own scale; each box is decoded
in the one tile where it sits furthest from a seam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sac.classical import boxes_from_labels, classical_instances
from sac.imageops import to_rgb_float
from sac.inference.merge import InstanceMask, merge_instances
from sac.inference.tiling import assign_boxes, make_tiles
from sac.predictor import SamPredictor


@dataclass
class ZeroShotResult:
    """Instance labels plus the classical proposals that prompted them."""

    labels: np.ndarray
    proposals: np.ndarray
    boxes: np.ndarray


def segment_with_boxes(
    predictor: SamPredictor,
    rgb: np.ndarray,
    boxes: np.ndarray,
    overlap: int = 64,
    batch_size: int = 64,
    min_area: int = 10,
) -> np.ndarray:
    """Decode one box prompt per nucleus over tiles and merge the masks into labels."""
    shape = rgb.shape[:2]
    tile_size = predictor.spec.image_size
    tiles = make_tiles(shape, tile_size, overlap)
    owner = assign_boxes(boxes, tiles, shape)
    instances: list[InstanceMask] = []
    for t_idx, tile in enumerate(tiles):
        chosen = np.flatnonzero(owner == t_idx)
        if chosen.size == 0:
            continue
        ys, xs = tile.slices(shape)
        predictor.set_image(rgb[ys, xs], normalized=True, upscale=False)
        local = boxes[chosen] - np.array([xs.start, ys.start, xs.start, ys.start], np.float32)
        for inst in predictor.predict_instances(boxes=local, batch_size=batch_size):
            if inst is not None:
                inst.y0 += ys.start
                inst.x0 += xs.start
                instances.append(inst)
    return merge_instances(instances, shape, min_area=min_area)


def zero_shot_instances(
    predictor: SamPredictor, image: np.ndarray, source: str = "image", min_area: int = 10
) -> ZeroShotResult:
    """Classical proposals -> boxes -> SAM masks -> instance labels, for an image of any size."""
    rgb = to_rgb_float(image, source)
    proposals = classical_instances(rgb, min_area=min_area)
    boxes = boxes_from_labels(proposals)
    labels = segment_with_boxes(predictor, rgb, boxes, min_area=min_area)
    return ZeroShotResult(labels, proposals, boxes)
