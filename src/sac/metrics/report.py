"""Scoring a labelled dataset: run a predictor (or read saved label files) and compute metrics.

:func:`evaluate_dataset` walks the samples of a :class:`~sac.data.SampleDataset` in name order,
gets a prediction for each (from a ``predict(image, name)`` callable or from
``<predictions_dir>/<name>_labels.tif``) and scores it with :func:`sac.metrics.evaluate_pair`.
A sample that cannot be scored (unreadable files, no prediction file, size mismatch, an entry
the reader already listed in ``dataset.problems``) is recorded in ``skipped`` with its reason,
and evaluation continues with the next one. :func:`write_report` saves the result as JSON.

Which pixel number is which (also written into every JSON report, see :data:`METRIC_NOTES`):

- ``pixel_dice``, ``pixel_iou``, ``pixel_f1``: foreground of the predicted *instance labels*
  (label > 0) against the GT foreground. Per image; in ``aggregate`` the **mean over images**.
- ``pixel_dice_sum``, ``pixel_iou_sum``, ``pixel_f1_sum`` (``aggregate`` only): **dataset
  level**, computed once from TP / FP / FN pixel counts summed over all scored images.
- ``semantic_pixel_*``: the same, but from the predictor's own foreground (semantic) mask, when
  it returns one; aggregated over the images that have one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sac import __version__
from sac.core.errors import ConfigError, InputError, SACError
from sac.core.fileio import atomic_path
from sac.data.base import Item, SampleDataset
from sac.data.images import as_label_image, read_labels
from sac.metrics import aggregate, evaluate_pair
from sac.metrics.pixel import pixel_counts, scores_from_counts
from sac.outputs.kinds import KINDS

log = logging.getLogger("sac.metrics.report")

#: ``predict(image, name)``: image is RGB uint8 (H, W, 3); returns an (H, W) integer label array,
#: or an object with ``.labels`` and optionally ``.semantic`` (bool (H, W) or None).
PredictFn = Callable[[np.ndarray, str], Any]

REPORT_FORMAT = "sac-evaluation/1"
#: The keys every scored image and the aggregate carry (the issue's required set).
MAIN_KEYS: tuple[str, ...] = (
    "pixel_dice", "pixel_iou", "pixel_f1", "f1_obj", "aji", "pq", "dsb_score",
)  # fmt: skip
SEMANTIC_KEYS: tuple[str, ...] = ("semantic_pixel_dice", "semantic_pixel_iou", "semantic_pixel_f1")
_SEMANTIC_COUNTS = ("semantic_pixel_tp", "semantic_pixel_fp", "semantic_pixel_fn")
PREDICTION_SUFFIX = KINDS["labels"].ending  # what sac segment writes

METRIC_NOTES: dict[str, str] = {
    "pixel_dice, pixel_iou, pixel_f1": (
        "pixel level, foreground of the predicted instance labels (label > 0) vs GT foreground; "
        "per image, and in 'aggregate' the mean over images (every image weighs the same); "
        "pixel_f1 equals pixel_dice"
    ),
    "pixel_dice_sum, pixel_iou_sum, pixel_f1_sum": (
        "aggregate only: dataset level, computed once from TP/FP/FN pixel counts summed over "
        "all scored images (pixel_tp, pixel_fp, pixel_fn), so large images weigh more"
    ),
    "semantic_pixel_*": (
        "like pixel_* but from the predictor's semantic (foreground) mask instead of its "
        "instance labels; only when the predictor returns one; aggregate: mean over the "
        "n_images_semantic images that have one, *_sum from their summed counts"
    ),
    "f1_obj, precision_obj, recall_obj": (
        "object detection at IoU > 0.5 (one-to-one matches); aggregate: mean over images; "
        "f1_obj_sum: from obj_tp/obj_fp/obj_fn summed over images"
    ),
    "aji": "Aggregated Jaccard Index (Kumar et al. 2017); aggregate: mean over images",
    "pq": "panoptic quality DQ x SQ at IoU > 0.5; aggregate: mean over images",
    "dsb_score": (
        "2018 Data Science Bowl score: mean over IoU thresholds 0.50..0.95 of TP/(TP+FP+FN); "
        "aggregate: mean over images"
    ),
    "empty images": "GT and prediction both empty -> 1.0; exactly one empty -> 0.0",
}


@dataclass(frozen=True)
class Skipped:
    """A sample that was not scored, and why."""

    name: str
    message: str


@dataclass
class EvaluationReport:
    """Result of :func:`evaluate_dataset`.

    ``images``: one JSON-ready dict per scored image (``name``, ``source``, every key of
    :func:`sac.metrics.evaluate_pair`, optional ``semantic_pixel_*``, ``predict_seconds`` and
    reader ``warnings`` if any). ``aggregate``: :func:`summarize` of them (empty when nothing
    was scored). ``dataset``: where the data came from; callers may add to it.
    """

    images: list[dict[str, Any]]
    aggregate: dict[str, Any]
    skipped: list[Skipped]
    wall_time_s: float
    predictions: str
    dataset: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] | None = None  # the model and settings that predicted, if one did

    @property
    def n_scored(self) -> int:
        return len(self.images)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def to_json_dict(self, model_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Everything as one JSON-serialisable dict (``model_config``, else :attr:`model`,
        goes under ``"model"``)."""
        model_config = model_config if model_config is not None else self.model
        return {
            "format": REPORT_FORMAT,
            "sac_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "dataset": dict(self.dataset),
            "predictions": self.predictions,
            "model": dict(model_config) if model_config is not None else None,
            "n_images": self.n_scored + self.n_skipped,
            "n_scored": self.n_scored,
            "n_skipped": self.n_skipped,
            "wall_time_s": round(self.wall_time_s, 3),
            "metrics": METRIC_NOTES,
            "aggregate": dict(self.aggregate),
            "images": [dict(r) for r in self.images],
            "skipped": [asdict(s) for s in self.skipped],
        }

    def format_table(self, max_rows: int | None = 30) -> str:
        """Plain-text table: per-image rows (at most ``max_rows``), mean and dataset-level rows."""
        cols = ("dice", "iou", "f1_obj", "aji", "pq", "dsb")
        keys = ("pixel_dice", "pixel_iou", "f1_obj", "aji", "pq", "dsb_score")
        rows = self.images if max_rows is None else self.images[:max_rows]
        width = min(max([len("dataset (summed counts)"), *(len(r["name"]) for r in rows)]), 32)
        head = f"{'image':<{width}} {'gt':>5} {'pred':>5} " + " ".join(f"{c:>6}" for c in cols)
        lines = [head, "-" * len(head)] if rows else []

        def line(name: str, gt: str, pred: str, values: Sequence[float | None]) -> str:
            if len(name) > width:
                name = name[: width - 3] + "..."
            cells = " ".join("     -" if v is None else f"{v:6.3f}" for v in values)
            return f"{name:<{width}} {gt:>5} {pred:>5} {cells}"

        for r in rows:
            lines.append(line(r["name"], str(r["n_gt"]), str(r["n_pred"]), [r[k] for k in keys]))
        if len(rows) < len(self.images):
            lines.append(f"... {len(self.images) - len(rows)} more image(s); see the JSON report")
        agg = self.aggregate
        if agg:
            lines.append("-" * len(head))
            n = max(len(self.images), 1)
            mean_gt, mean_pred = f"{agg['n_gt'] / n:.1f}", f"{agg['n_pred'] / n:.1f}"
            lines.append(line("mean (per image)", mean_gt, mean_pred, [agg[k] for k in keys]))
            sums = [agg["pixel_dice_sum"], agg["pixel_iou_sum"], agg["f1_obj_sum"]]
            lines.append(line("dataset (summed counts)", str(agg["n_gt"]), str(agg["n_pred"]),
                              [*sums, None, None, None]))
            if agg.get("n_images_semantic"):
                mean, total = agg["semantic_pixel_dice"], agg["semantic_pixel_dice_sum"]
                lines.append(
                    f"semantic mask ({agg['n_images_semantic']} images): pixel dice mean "
                    f"{mean:.3f}, dataset {total:.3f}"
                )
        lines.append(
            f"scored {self.n_scored} of {self.n_scored + self.n_skipped} image(s), "
            f"{self.n_skipped} skipped, in {self.wall_time_s:.1f} s"
        )
        return "\n".join(lines)


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Aggregate scored rows: :func:`sac.metrics.aggregate` plus ``f1_obj_sum`` and semantic keys.

    Scores are means over images, counts are sums, ``*_sum`` scores come from summed counts.
    Returns ``{}`` for no rows.
    """
    if not rows:
        return {}
    out: dict[str, Any] = aggregate(rows)
    out["f1_obj_sum"] = scores_from_counts(out["obj_tp"], out["obj_fp"], out["obj_fn"])["f1"]
    sem = [r for r in rows if _SEMANTIC_COUNTS[0] in r]
    if sem:
        for k in SEMANTIC_KEYS:
            out[k] = float(np.mean([r[k] for r in sem], dtype=np.float64))
        tp, fp, fn = (int(sum(int(r[k]) for r in sem)) for k in _SEMANTIC_COUNTS)
        total = scores_from_counts(tp, fp, fn)
        out.update(dict(zip(_SEMANTIC_COUNTS, (tp, fp, fn), strict=True)))
        out.update({f"semantic_pixel_{k}_sum": total[k] for k in ("dice", "iou", "f1")})
    out["n_images_semantic"] = len(sem)
    return out


def _select(
    dataset: SampleDataset, names: Sequence[str] | None
) -> list[tuple[str, int | None, str | None]]:
    """(name, item index or None, problem message or None) for the samples to evaluate."""
    index = {it.name: i for i, it in enumerate(dataset.items)}
    problems: dict[str, list[str]] = {}
    for p in dataset.problems:
        problems.setdefault(p.name, []).append(str(p))
    wanted = sorted(set(index) | set(problems)) if names is None else sorted(set(names))
    entries: list[tuple[str, int | None, str | None]] = []
    for name in wanted:
        if name in index:
            entries.append((name, index[name], None))
        elif name in problems:
            entries.extend((name, None, msg) for msg in problems[name])
        else:
            entries.append((name, None, f"listed in the split but not found in {dataset.root}"))
    return entries


def _unpack(result: Any, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (uint32) and optional semantic mask (bool) from a predictor's return value."""
    if isinstance(result, np.ndarray):
        labels, semantic = result, None
    elif hasattr(result, "labels"):
        labels, semantic = result.labels, getattr(result, "semantic", None)
    else:
        raise TypeError(
            f"predict returned {type(result).__name__}; expected a label array or an object "
            "with .labels (and optionally .semantic)"
        )
    labels = as_label_image(np.asarray(labels), source=f"{name}: predicted labels")
    if semantic is not None:
        semantic = np.asarray(semantic)
        if semantic.dtype != bool or semantic.shape != labels.shape:
            raise InputError(
                f"{name}: the semantic mask must be bool with the labels' shape {labels.shape}, "
                f"got {semantic.dtype} {semantic.shape}"
            )
    return labels, semantic


def _score(
    dataset: SampleDataset,
    item: Item,
    position: int,
    predict: PredictFn | None,
    predictions_dir: Path | None,
) -> dict[str, Any]:
    """Read one sample, get its prediction and compute every metric (raises SACError)."""
    sample = dataset[position]
    t0 = time.perf_counter()
    semantic = None
    if predict is not None:
        labels, semantic = _unpack(predict(sample.image, sample.name), sample.name)
    else:
        assert predictions_dir is not None
        path = predictions_dir / f"{item.name}{PREDICTION_SUFFIX}"
        if not path.is_file():
            raise InputError(f"{path}: prediction file not found (expected <name>_labels.tif)")
        labels = read_labels(path)
    seconds = time.perf_counter() - t0
    if labels.shape != sample.labels.shape:
        raise InputError(
            f"{item.name}: size mismatch: prediction has shape {labels.shape} but the ground "
            f"truth {sample.labels.shape}; predictions must be at the image's full size"
        )
    row: dict[str, Any] = {"name": item.name, "source": sample.source}
    row.update(evaluate_pair(sample.labels, labels))
    if semantic is not None:
        counts = pixel_counts(sample.labels, semantic.astype(np.uint8))
        scores = scores_from_counts(counts["tp"], counts["fp"], counts["fn"])
        row.update({f"semantic_pixel_{k}": scores[k] for k in ("dice", "iou", "f1")})
        row.update({f"semantic_pixel_{k}": counts[k] for k in ("tp", "fp", "fn")})
    row["predict_seconds"] = round(seconds, 4)
    if sample.warnings:
        row["warnings"] = list(sample.warnings)
    return row


def evaluate_dataset(
    dataset: SampleDataset,
    predict: PredictFn | None = None,
    predictions_dir: str | Path | None = None,
    progress: bool = True,
    names: Sequence[str] | None = None,
    limit: int | None = None,
) -> EvaluationReport:
    """Score every sample of ``dataset`` (or those in ``names``, at most ``limit``).

    Pass exactly one of ``predict`` (a :data:`PredictFn`) or ``predictions_dir`` (a folder
    with ``<name>_labels.tif`` per sample). Samples are visited in name order; reader problems,
    split names absent from the dataset and per-sample :class:`~sac.core.errors.SACError` s are
    recorded in ``skipped``. Other exceptions (e.g. bugs in ``predict``) propagate.
    """
    if (predict is None) == (predictions_dir is None):
        raise ConfigError("pass exactly one of predict= and predictions_dir=")
    pred_dir = Path(predictions_dir) if predictions_dir is not None else None
    if pred_dir is not None and not pred_dir.is_dir():
        raise InputError(f"{pred_dir}: predictions folder not found; check the path")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    entries = _select(dataset, names)[:limit]
    items = dataset.items
    images: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    from tqdm import tqdm

    t0 = time.perf_counter()
    for name, position, problem in tqdm(
        entries, desc="evaluate", unit="image", disable=not progress
    ):
        if position is None:
            skipped.append(Skipped(name, problem or "unusable sample"))
            continue
        try:
            images.append(_score(dataset, items[position], position, predict, pred_dir))
        except SACError as exc:
            log.info("skipped %s: %s", name, exc)  # reported by the caller, not logged twice
            skipped.append(Skipped(name, str(exc)))
    wall = time.perf_counter() - t0
    info = {"root": str(dataset.root), "reader": dataset.source, "selected": len(entries)}
    return EvaluationReport(
        images=images,
        aggregate=summarize(images),
        skipped=skipped,
        wall_time_s=wall,
        predictions=str(pred_dir) if pred_dir is not None else "predict function",
        dataset=info,
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_report(
    path: str | Path,
    report: EvaluationReport,
    model_config: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``report.to_json_dict(model_config)`` as JSON, atomically; returns the path."""
    path = Path(path)
    try:
        text = json.dumps(
            report.to_json_dict(model_config), indent=2, allow_nan=False, default=_json_default
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot write the report as JSON: {exc}") from exc
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path
