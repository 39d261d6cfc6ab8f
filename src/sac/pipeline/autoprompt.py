"""Stage 3, detected nuclei to SAM prompt sets, as training and inference both use it.

:func:`positive_points` places one positive point per nucleus by the configured strategy (the
paper's centroid-based or probability-based selection); :func:`instance_sets` and
:func:`semantic_set` build the prompt sets of the two outputs from the nuclei and the
generator's maps (the primitives are in :mod:`sac.pipeline.prompts`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from sac.model.config import PromptConfig, Thresholds
from sac.pipeline.maps import Maps
from sac.pipeline.prompts import (
    PromptSet,
    background_points,
    centroid_points,
    instance_prompts,
    instance_table,
    probability_points,
    semantic_prompts,
)

# Background negatives are sampled from a generator fixed per call, so inference is repeatable.
INFERENCE_SEED = 0


def positive_points(labels: np.ndarray, maps: Maps, strategy: str) -> np.ndarray:
    """(N, 2) ``(x, y)`` positive point per instance of ``labels`` (increasing id).

    ``centroid``: the instance's centroid (its innermost pixel for non-convex shapes);
    ``probability``: its pixel of highest centre probability.
    """
    table = instance_table(labels)
    if strategy == "centroid" or len(table) == 0:
        return centroid_points(labels, table)
    pos = ndi.maximum_position(maps.centre, table.seq, np.arange(1, len(table) + 1))
    return np.asarray(pos, np.float32).reshape(-1, 2)[:, ::-1].copy()


def instance_sets(labels: np.ndarray, maps: Maps, cfg: PromptConfig,
                  rng: np.random.Generator | None = None) -> list[PromptSet]:
    """One prompt set per instance of ``labels``, following ``cfg``."""
    if not labels.any():
        return []
    rng = rng if rng is not None else np.random.default_rng(INFERENCE_SEED)
    return instance_prompts(
        labels, positive_points(labels, maps, cfg.strategy),
        n_neg_neighbours=cfg.neighbour_negatives if cfg.use_points else 0,
        n_neg_background=cfg.background_negatives if cfg.use_points else 0,
        use_boxes=cfg.use_boxes, use_points=cfg.use_points, box_pad=cfg.box_pad,
        fg_prob=maps.fg, rng=rng,
    )


def semantic_points(labels: np.ndarray, maps: Maps, cfg: PromptConfig, fg_thresh: float,
                    min_distance: float) -> np.ndarray:
    """Positive points for a semantic set: instance points, or the most probable pixels."""
    if cfg.strategy == "centroid":
        return positive_points(labels, maps, "centroid")
    return probability_points(maps.fg * maps.centre, cfg.semantic_points, min_distance,
                              thresh=fg_thresh * 0.5)


def semantic_set(labels: np.ndarray, maps: Maps, cfg: PromptConfig, th: Thresholds,
                 rng: np.random.Generator | None = None) -> PromptSet:
    """All prompts of one tile in one set: positives by strategy, negatives on background.

    About a quarter of the ``cfg.semantic_points`` budget goes to background negatives.
    """
    rng = rng if rng is not None else np.random.default_rng(INFERENCE_SEED)
    pos = semantic_points(labels, maps, cfg, th.fg, max(th.min_distance, 2))
    n_neg = max(1, cfg.semantic_points // 4)
    spacing = max(4.0, float(np.sqrt(maps.fg.size / max(n_neg, 1))) / 2)
    neg = background_points(maps.fg, n_neg, spacing, rng=rng)
    return semantic_prompts(pos, neg, cfg.semantic_points, rng)
