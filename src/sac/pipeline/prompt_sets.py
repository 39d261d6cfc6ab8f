"""Stage 3, nuclei to SAM prompt sets: the one prompt rule training and inference share.

A model's :class:`PromptConfig` says what a prompt set holds; :func:`set_options` turns it into
the options of the set builders (:func:`sac.pipeline.prompts.instance_prompts` for detected
nuclei, :func:`~sac.pipeline.prompts.ground_truth_prompts` for training on the truth) and
:func:`semantic_negatives` places the background negatives of a tile's semantic set, so that
a change of the rule is made here once. :func:`positive_points` places one positive point per
nucleus by the configured strategy (the paper's centroid-based or probability-based
selection); :func:`instance_sets` and :func:`semantic_set` build the prompt sets of the two
outputs from detected nuclei and the generator's maps.
"""

from __future__ import annotations

from typing import Any

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


def set_options(cfg: PromptConfig) -> dict[str, Any]:
    """What each nucleus's prompt set holds under ``cfg``, as the set builders' options:
    negatives only where points are used at all."""
    return {"n_neg_neighbours": cfg.neighbour_negatives if cfg.use_points else 0,
            "n_neg_background": cfg.background_negatives if cfg.use_points else 0,
            "use_boxes": cfg.use_boxes, "use_points": cfg.use_points, "box_pad": cfg.box_pad}


def semantic_negatives(fg: np.ndarray, cfg: PromptConfig, rng: np.random.Generator
                       ) -> np.ndarray:
    """Background negatives of a semantic set: a quarter of its ``semantic_points`` budget,
    spread over the confident background of ``fg`` (probabilities or a mask)."""
    n_neg = max(1, cfg.semantic_points // 4)
    spacing = max(4.0, float(np.sqrt(fg.size / n_neg)) / 2)
    return background_points(fg, n_neg, spacing, rng=rng)


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
    return instance_prompts(labels, positive_points(labels, maps, cfg.strategy),
                            fg_prob=maps.fg, rng=rng, **set_options(cfg))


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
    return semantic_prompts(pos, semantic_negatives(maps.fg, cfg, rng), cfg.semantic_points,
                            rng)
