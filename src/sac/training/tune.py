"""Choosing the detection thresholds of a trained model on its validation images.

The generator's maps are computed once per image; nucleus detection (a watershed on those maps)
is then repeated over a small grid of foreground and centre thresholds and seed spacings, and
the setting with the best object F1 (IoU 0.5) of the detections against the ground truth wins.
This is cheap (no SAM decoding) and only ever uses the validation split.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from sac.autoprompt import Maps, detect
from sac.metrics import aggregate, evaluate_pair
from sac.sacmodel import SACModel
from sac.training.sampler import TrainImage

FG = (0.4, 0.5, 0.6)
CENTRE = (0.15, 0.25, 0.35, 0.5)
MIN_DISTANCE = (2, 3, 4)


@dataclass
class TuneResult:
    """The chosen thresholds and the score table of every setting tried."""

    fg: float
    centre: float
    min_distance: int
    score: float
    default_score: float
    table: list[dict[str, Any]]


def tune_detection(model: SACModel, images: list[TrainImage], metric: str = "f1_obj",
                   bf16: bool = False) -> TuneResult:
    """Grid-search ``fg``/``centre``/``min_distance`` on ``images`` (at the model's scale)."""
    from sac.inference.segment import Segmenter

    if not images:
        raise ValueError("threshold tuning needs at least one validation image")
    seg = Segmenter(model, bf16=bf16)
    maps: list[Maps] = [seg.generator_maps(im.rgb) for im in images]
    th0 = model.config.thresholds
    table = []
    grid = (sorted({*FG, th0.fg}), sorted({*CENTRE, th0.centre}),
            sorted({*MIN_DISTANCE, th0.min_distance}))  # always includes the current setting
    for fg, centre, dist in itertools.product(*grid):
        th = dataclasses.replace(th0, fg=fg, centre=centre, min_distance=dist)
        rows = [evaluate_pair(im.labels, detect(m, th)) for im, m in zip(images, maps,
                                                                           strict=True)]
        agg = aggregate(rows)
        table.append({"fg": fg, "centre": centre, "min_distance": dist,
                      metric: float(agg[metric]), "aji": float(agg["aji"])})
    current = next(r for r in table if (r["fg"], r["centre"], r["min_distance"])
                   == (th0.fg, th0.centre, th0.min_distance))
    best = max(table, key=lambda r: r[metric])
    if best[metric] <= current[metric]:  # change the setting only for a real improvement
        best = current
    default_score = current[metric]
    return TuneResult(best["fg"], best["centre"], int(best["min_distance"]), best[metric],
                      default_score, table)


def apply_tuning(model: SACModel, result: TuneResult) -> None:
    """Store the chosen thresholds in the model's config (saved with the model)."""
    th = dataclasses.replace(model.config.thresholds, fg=result.fg, centre=result.centre,
                             min_distance=result.min_distance)
    model.config = dataclasses.replace(model.config, thresholds=th)


def summary(result: TuneResult, metric: str) -> dict[str, Any]:
    """A short JSON-ready record for the model's training summary."""
    return {"metric": f"detection {metric}", "fg": result.fg, "centre": result.centre,
            "min_distance": result.min_distance, "score": round(result.score, 4),
            "default_score": round(result.default_score, 4),
            "grid": {"fg": FG, "centre": CENTRE, "min_distance": MIN_DISTANCE}}
