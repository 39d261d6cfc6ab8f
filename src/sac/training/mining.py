"""Hard negatives: the places where the model being trained invents nuclei.

Nucleus-poor and synthetic crops (:mod:`sac.training.negatives`) show the model tissue
without nuclei; mining shows it its own mistakes. After each epoch the generator runs over
every training image, its detections are matched to the labels
(:func:`sac.training.step.match_targets`), and the centres of the detections that cover no
labelled nucleus are kept; the crop sampler then centres a share of the next epoch's crops
(``NegativeConfig.hard``) on them. Invented nuclei cost there what they cost anywhere (an
empty mask target, the generator's foreground loss), only more often.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage as ndi

from sac.model import SACModel
from sac.pipeline.maps import GENERATOR_TILE, generator_maps
from sac.pipeline.nuclei import detect
from sac.training.sampler import TrainImage
from sac.training.step import match_targets

MAX_PER_IMAGE = 256  # centres kept per image (the largest false detections first)


def false_detections(model: SACModel, images: list[TrainImage], bf16: bool = False
                     ) -> list[np.ndarray]:
    """Per image, int32 (k, 2) (row, col) centres of the generator's detections that match
    no labelled nucleus (a third of the detection at least, as in training)."""
    out = []
    was = model.generator.training
    model.generator.eval()
    try:
        with torch.no_grad():
            for im in images:
                maps = generator_maps(model.generator, im.rgb, GENERATOR_TILE, model.device,
                                      bf16)
                det = detect(maps, model.config.thresholds)
                wrong = np.flatnonzero(match_targets(det, im.labels) == 0) + 1
                if wrong.size == 0:
                    out.append(np.zeros((0, 2), np.int32))
                    continue
                size = np.bincount(det.ravel(), minlength=int(det.max()) + 1)[wrong]
                wrong = wrong[np.argsort(size)[::-1][:MAX_PER_IMAGE]]
                centres = np.asarray(ndi.center_of_mass(det > 0, det, wrong), np.float64)
                out.append(np.rint(centres.reshape(-1, 2)).astype(np.int32))
    finally:
        model.generator.train(was)
    return out
