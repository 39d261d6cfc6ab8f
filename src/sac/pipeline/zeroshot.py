"""Zero-shot instance segmentation: classical nucleus detections become SAM box prompts.

This is the pipeline the demo runs before trained SAC models exist, and the "SAM zero-shot with
boxes" baseline later: LiteMedSAM was distilled with box prompts, so boxes work without any
fine-tuning. Large images are cut into model-sized tiles at their own scale; each box is decoded
in the one tile where it sits furthest from a seam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sac.core.images import to_rgb_float
from sac.core.labels import InstanceMask
from sac.pipeline.classical import boxes_from_labels, classical_instances
from sac.pipeline.decode import decode_sets, encoded_tiles
from sac.pipeline.merge import merge_instances
from sac.pipeline.prompts import PromptSet
from sac.sam.predictor import SamPredictor

#: embedding tokens per side of a box's decoding window
BOX_WINDOW = 32


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
    """Decode one box prompt per nucleus over tiles (:mod:`sac.pipeline.decode`) and merge the
    masks into labels."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    sets = [PromptSet(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), box) for box in boxes]
    instances: list[InstanceMask] = []
    for tile in encoded_tiles(predictor, rgb, boxes, predictor.spec.image_size, overlap):
        instances += decode_sets(predictor, [sets[i] for i in tile.chosen], None, tile.offset,
                                 BOX_WINDOW, batch_size)
    return merge_instances(instances, rgb.shape[:2], min_area=min_area)


def zero_shot_instances(
    predictor: SamPredictor, image: np.ndarray, source: str = "image", min_area: int = 10
) -> ZeroShotResult:
    """Classical proposals -> boxes -> SAM masks -> instance labels, for an image of any size."""
    rgb = to_rgb_float(image, source)
    proposals = classical_instances(rgb, min_area=min_area)
    boxes = boxes_from_labels(proposals)
    labels = segment_with_boxes(predictor, rgb, boxes, min_area=min_area)
    return ZeroShotResult(labels, proposals, boxes)
