"""Choosing the detection thresholds of a trained model on its validation images.

The generator's maps are computed once per image; nucleus detection (a watershed on those maps)
is then repeated over a small grid of foreground and centre thresholds and seed spacings, and
the setting with the best object F1 (IoU 0.5) of the detections against the ground truth wins.
This is cheap (no SAM decoding) and only ever uses the validation split.

Then :func:`tune_setting` runs the full pipeline once per image and value of each setting in
:data:`SETTINGS` in turn, keeping the best pixel Dice plus the model's checkpoint-selection
metric (AJI unless it was trained to another; :func:`criterion`): on request first the same
detection thresholds again (:data:`PROMPT_SETTINGS`; what SAM is prompted with judged by SAM's
masks, not by the generator's own outlines), then SAM's mask logit threshold (SAM's own is
0; a shift corrects masks systematically too large or too small for the annotation style)
and the generator's foreground below which a mask is dropped (SAM also outlines things on
background; its own predicted quality separated them far less well in an exploration: on 30
DSB validation images, dropping masks by it lowered AJI). Last,
:func:`tune_fill` runs the pipeline once more per image (instances and semantic mask) and
picks the completion from the semantic mask (:mod:`sac.pipeline.complete`) by the same
criterion, again keeping the current setting unless another beats it by more than
:data:`MIN_GAIN`.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sac.data.base import SampleDataset
from sac.metrics import aggregate, evaluate_pair
from sac.model import SACModel, Thresholds
from sac.pipeline.maps import Maps
from sac.pipeline.nuclei import detect
from sac.pipeline.result import SegmentResult
from sac.sam.predictor import EmbeddingCache
from sac.training.sampler import TrainImage, load_images

FG = (0.4, 0.5, 0.6)
CENTRE = (0.15, 0.25, 0.35, 0.5)
MIN_DISTANCE = (2, 3, 4)
FILL_NEW_AREA = (0, 16, 32, 64)
FILL_ATTACH = (False, True)
SCORED = ("pixel_dice", "aji", "pq", "f1_obj", "dsb_score")  # kept in the settings' tables
#: the detection thresholds refined on the whole pipeline after the generator-level grid (the
#: generator's own best detections need not be SAM's best prompts: SAM and the merge undo some
#: duplicate seeds, not a missing one), over a wider range than that grid
PROMPT_SETTINGS: dict[str, tuple[float, ...]] = {
    "centre": (0.1, 0.15, 0.25, 0.35, 0.5, 0.6, 0.7),
    "min_distance": (2, 3, 4, 5, 6),
    "fg": (0.3, 0.4, 0.5, 0.6),
}
#: the settings applied to SAM's masks
MASK_SETTINGS: dict[str, tuple[float, ...]] = {
    "mask_logit": (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0),  # logits change by a few per pixel
    # the upper quartile of the generator's foreground under a mask; not above 0.7, where
    # whole nuclei go whose map has a hole (flat nuclei, strips folded with mirrored margins)
    "min_fg": (0.0, 0.3, 0.4, 0.5, 0.6, 0.7),
    # the share of a mask that must stay free of better masks, else it is a duplicate
    "min_visible": (0.3, 0.4, 0.5, 0.6, 0.7),
}
#: the settings that can be tuned on the whole pipeline, one after another in this order, each
#: with the others fixed
SETTINGS: dict[str, tuple[float, ...]] = {**PROMPT_SETTINGS, **MASK_SETTINGS}
#: those tuned unless asked otherwise: the detection thresholds refined on the whole pipeline
#: and the duplicate share gained nothing on MoNuSeg and +0.005 (selection noise) on DSB, at
#: twice the tuning time (docs/studies.md, ``results/postprocess/postprocess_*_prompts.md``)
DEFAULT_SETTINGS: tuple[str, ...] = ("mask_logit", "min_fg")
#: a whole-pipeline setting changes only when pixel Dice + the target rises by more than this
#: (differences below it are noise on a few validation images, not a reason to move)
MIN_GAIN = 1e-3


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
    from sac.pipeline.segmenter import Segmenter

    if not images:
        raise ValueError("threshold tuning needs at least one validation image")
    seg = Segmenter(model, precision="bf16" if bf16 else "fp32", runtime="torch")
    maps = [seg.generator_maps(im.rgb) for im in images]
    return tune_detection_maps(maps, images, model.config.thresholds, metric)


def tune_detection_maps(maps: list[Maps], images: list[TrainImage], th0: Thresholds,
                        metric: str = "f1_obj") -> TuneResult:
    """:func:`tune_detection` on generator maps already computed for ``images``, from the
    thresholds ``th0`` (which change only where another setting scores higher)."""
    table = []
    groups = [im.source for im in images]  # a mixed set: each dataset weighs the same
    grid = (sorted({*FG, th0.fg}), sorted({*CENTRE, th0.centre}),
            sorted({*MIN_DISTANCE, th0.min_distance}))  # always includes the current setting
    for fg, centre, dist in itertools.product(*grid):
        th = dataclasses.replace(th0, fg=fg, centre=centre, min_distance=dist)
        rows = [evaluate_pair(im.labels, detect(m, th)) for im, m in zip(images, maps,
                                                                           strict=True)]
        agg = aggregate(rows, groups)
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


def criterion(agg: dict[str, float], target: str) -> float:
    """What the post-processing settings are chosen by: pixel Dice (area) plus ``target``
    (instances), so that neither is traded away for the other."""
    if target not in SCORED:
        raise ValueError(f"unknown tuning target {target!r}; one of {SCORED}")
    return float(agg["pixel_dice"] + agg[target])


@dataclass
class SettingResult:
    """One post-processing setting's chosen value, its score (pixel Dice + the target
    metric), the score of the value it had, and the table of every value tried."""

    name: str
    value: float | int
    score: float
    default_score: float
    table: list[dict[str, Any]]


def tune_setting(model: SACModel, images: list[TrainImage], name: str,
                 values: tuple[float, ...], bf16: bool = False,
                 full: list[TrainImage] | None = None,
                 embeddings: EmbeddingCache | None = None, target: str = "aji"
                 ) -> SettingResult:
    """Grid-search the threshold ``name`` (a :class:`Thresholds` field applied after the
    generator, e.g. ``mask_logit``) over ``values`` with the completion off (it is tuned
    last, on the chosen masks) for the best pixel Dice + ``target`` (a metric of
    :data:`SCORED`); ``full`` as in :func:`tune_fill`. One pipeline run per value;
    ``embeddings`` spares the encoder after the first."""
    from sac.pipeline.segmenter import Segmenter

    if full is not None:
        images = full
    if not images:
        raise ValueError("tuning needs at least one validation image")
    th0 = model.config.thresholds
    table = []
    groups = [im.source for im in images]
    whole = isinstance(getattr(th0, name), int)  # e.g. min_distance: keep it an integer
    for value in sorted({*values, getattr(th0, name)}):
        value = int(value) if whole else float(value)
        change: dict[str, Any] = {name: value}
        th = dataclasses.replace(th0.without_fill(), **change)
        seg = Segmenter(model, precision="bf16" if bf16 else "fp32", runtime="torch", thresholds=th,
                        embeddings=embeddings)
        rows = [evaluate_pair(im.labels, seg.segment(im.rgb, im.name,
                                                     scale=None if full else 1.0).labels)
                for im in images]
        agg = aggregate(rows, groups)
        table.append({name: value, **{k: float(agg[k]) for k in SCORED},
                      "score": criterion(agg, target)})
    current = next(r for r in table if r[name] == getattr(th0, name))
    best = max(table, key=lambda r: r["score"])
    if best["score"] <= current["score"] + MIN_GAIN:  # change only for a real improvement
        best = current
    return SettingResult(name, best[name], best["score"], current["score"], table)


@dataclass
class FillResult:
    """The chosen completion setting, its score (pixel Dice + the target) and the table."""

    new_area: int
    attach: bool
    score: float
    default_score: float
    table: list[dict[str, Any]]


def tune_fill(model: SACModel, images: list[TrainImage], bf16: bool = False,
              full: list[TrainImage] | None = None,
              embeddings: EmbeddingCache | None = None, target: str = "aji") -> FillResult:
    """Grid-search ``fill_new_area``/``fill_attach`` on ``images`` (at the model's scale).

    With ``full`` (the same images at their own resolution) it scores what ``sac segment``
    gives instead: the pipeline at its default scale, labels at the input size. For a model
    working at half resolution the two disagree (seen: a completion that raised pixel Dice
    + AJI at the model's scale lowered AJI by 0.003 at the images' own)."""
    from sac.pipeline.complete import complete_from_semantic
    from sac.pipeline.segmenter import Segmenter

    if full is not None:
        images = full
    if not images:
        raise ValueError("tuning needs at least one validation image")
    th0 = model.config.thresholds
    seg = Segmenter(model, precision="bf16" if bf16 else "fp32", runtime="torch",
                    thresholds=th0.without_fill(), embeddings=embeddings)
    results = [seg.segment(im.rgb, im.name, scale=None if full else 1.0, semantic=True)
               for im in images]
    # fill areas are in model pixels; a result at the input size has 1/scale^2 per one
    zoom = [1.0 if r.size is None or not full else 1.0 / r.size.scale**2 for r in results]
    groups = [im.source for im in images]
    table = []
    for area, attach in itertools.product(sorted({*FILL_NEW_AREA, th0.fill_new_area}),
                                          FILL_ATTACH):
        rows = [evaluate_pair(im.labels, complete_from_semantic(
                    r.labels, _semantic(r), round(area * z), attach)[0])
                for im, r, z in zip(images, results, zoom, strict=True)]
        agg = aggregate(rows, groups)
        table.append({"fill_new_area": area, "fill_attach": attach,
                      "pixel_dice": float(agg["pixel_dice"]), "aji": float(agg["aji"]),
                      "score": criterion(agg, target)})
    current = next(r for r in table if (r["fill_new_area"], r["fill_attach"])
                   == (th0.fill_new_area, th0.fill_attach))
    best = max(table, key=lambda r: r["score"])
    if best["score"] <= current["score"] + MIN_GAIN:
        best = current
    return FillResult(int(best["fill_new_area"]), bool(best["fill_attach"]), best["score"],
                      current["score"], table)


def apply_tuning(model: SACModel, result: TuneResult, fill: FillResult | None = None,
                 settings: list[SettingResult] | tuple[SettingResult, ...] = ()) -> None:
    """Store the chosen thresholds in the model's config (saved with the model)."""
    th = dataclasses.replace(model.config.thresholds, fg=result.fg, centre=result.centre,
                             min_distance=result.min_distance)
    tuned: dict[str, Any] = {r.name: r.value for r in settings}
    th = dataclasses.replace(th, **tuned)
    if fill is not None:
        th = dataclasses.replace(th, fill_new_area=fill.new_area, fill_attach=fill.attach)
    model.config = dataclasses.replace(model.config, thresholds=th)


def summary(result: TuneResult, metric: str, fill: FillResult | None = None,
            settings: list[SettingResult] | tuple[SettingResult, ...] = (),
            target: str = "aji") -> dict[str, Any]:
    """A short JSON-ready record for the model's training summary (``target``: what the
    post-processing settings were chosen by, with pixel Dice).

    ``fg``/``centre``/``min_distance`` are the final values; ``generator_choice`` holds the
    generator-level grid's (scored by ``score``), ``pipeline`` the refinement of each on the
    whole pipeline."""
    chosen = {"fg": result.fg, "centre": result.centre, "min_distance": result.min_distance}
    out: dict[str, Any] = {
        "metric": f"detection {metric}", **chosen, "score": round(result.score, 4),
        "default_score": round(result.default_score, 4),
        "grid": {"fg": FG, "centre": CENTRE, "min_distance": MIN_DISTANCE}}
    for r in settings:
        rec = {"metric": f"pixel_dice + {target}", "value": r.value,
               "score": round(r.score, 4), "default_score": round(r.default_score, 4),
               "table": [{k: round(v, 4) for k, v in row.items()} for row in r.table]}
        if r.name in PROMPT_SETTINGS:
            out.setdefault("pipeline", {})[r.name] = rec
            out[r.name] = r.value
        else:
            out[r.name] = rec
    if "pipeline" in out:
        out["generator_choice"] = chosen
    if fill is not None:
        out["fill"] = {"metric": f"pixel_dice + {target}", "fill_new_area": fill.new_area,
                       "fill_attach": fill.attach, "score": round(fill.score, 4),
                       "default_score": round(fill.default_score, 4),
                       "grid": {"fill_new_area": FILL_NEW_AREA, "fill_attach": FILL_ATTACH}}
    return out


def at_own_size(dataset: SampleDataset, images: list[TrainImage], scale: float
                ) -> list[TrainImage] | None:
    """``images`` (read from ``dataset`` at ``scale``) again at their own size, for scoring
    the completion as ``sac segment`` runs (:func:`tune_fill`); ``None`` at scale 1."""
    if scale == 1:
        return None
    full, _ = load_images(dataset, [im.name for im in images], 1.0)
    return full


def tune_model_folder(model_dir: str | Path, images: list, output: Path | None,
                      bf16: bool = False, fill: bool = True,
                      full: list[TrainImage] | None = None,
                      settings: tuple[str, ...] = DEFAULT_SETTINGS,
                      target: str | None = None) -> dict:
    """Tune ``model_dir`` on ``images`` (at its scale) and save it; returns the summary.

    Detection thresholds first; then each of ``settings`` (names in :data:`SETTINGS`) in the
    order there, and with ``fill`` the completion from the semantic mask; these run the whole
    pipeline per image (on ``full``, the images at their own resolution, when given: see
    :func:`tune_fill`), the encoder once per image thanks to a shared embedding cache, and
    are chosen by pixel Dice + ``target`` (default: the metric the model's checkpoint was
    selected by, else AJI).
    """
    from sac.model import load_model, save_model

    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; tunable: {sorted(SETTINGS)}")
    settings = tuple(name for name in SETTINGS if name in settings)  # always in SETTINGS' order
    model = load_model(model_dir)
    if target is None:
        target = str(model.config.training.get("select_metric", "aji"))
    if target not in SCORED:  # fail before any work
        raise ValueError(f"unknown tuning target {target!r}; one of {SCORED}")
    result = tune_detection(model, images, bf16=bf16)
    apply_tuning(model, result)
    cache = EmbeddingCache()
    chosen: list[SettingResult] = []
    for name in settings:
        chosen.append(tune_setting(model, images, name, SETTINGS[name], bf16, full, cache,
                                   target))
        apply_tuning(model, result, settings=chosen)
    filled = (tune_fill(model, images, bf16=bf16, full=full, embeddings=cache, target=target)
              if fill else None)
    apply_tuning(model, result, filled, chosen)
    training = dict(model.config.training)
    if "threshold_tuning" in training:  # keep the record of earlier tunings
        training["earlier_tunings"] = [*training.get("earlier_tunings", []),
                                       training["threshold_tuning"]]
    training["threshold_tuning"] = summary(result, "f1_obj", filled, chosen, target)
    folder = output if output is not None else Path(model_dir)
    save_model(model, folder, overwrite=output is None, dtype=model.config.dtype,
               training=training)
    return training["threshold_tuning"]


def setting_record(s: dict, name: str) -> dict | None:
    """The record (value, scores, table) of the whole-pipeline setting ``name`` in a tuning
    summary (:func:`summary`), ``None`` when it was not tuned."""
    r = s.get("pipeline", {}).get(name) or s.get(name)
    return r if isinstance(r, dict) else None


def describe(s: dict) -> str:
    """One line on what tuning changed."""
    gen = s.get("generator_choice", s)
    line = (f"detection F1 {s['default_score']:.3f} -> {s['score']:.3f} with fg {gen['fg']}, "
            f"centre {gen['centre']}, min_distance {gen['min_distance']}")
    for name in SETTINGS:
        r = setting_record(s, name)
        if r is not None:
            where = " on the whole pipeline" if name in PROMPT_SETTINGS else ""
            line += (f"; {name}{where} {r['value']}: {r['metric']} {r['default_score']:.3f} "
                     f"-> {r['score']:.3f}")
    if "fill" in s:
        f = s["fill"]
        line += (f"; completion from the semantic mask (new nuclei >= {f['fill_new_area']} px,"
                 f" attach {f['fill_attach']}): {f['metric']} {f['default_score']:.3f} -> "
                 f"{f['score']:.3f}")
    return line


def _semantic(result: SegmentResult) -> np.ndarray:
    """A result's semantic mask (fill tuning segments with it on)."""
    assert result.semantic is not None, "fill tuning needs results with a semantic mask"
    return result.semantic
