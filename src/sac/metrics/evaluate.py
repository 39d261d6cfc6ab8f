"""``sac.evaluate``: score a model, or saved label images, on a labelled dataset.

The workflow behind ``sac evaluate`` (which only parses its flags, prints the table and writes
the JSON report): open the dataset, pick the images of a split, segment them with the model
(or read ``<name>_labels.tif`` files) and score them with :mod:`sac.metrics.report`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sac.core.errors import ConfigError
from sac.data.open import open_dataset, resolve_split
from sac.metrics.report import EvaluationReport, evaluate_dataset
from sac.pipeline.options import SegmentOptions

SUBSETS = ("val", "train", "all")


def select_names(dataset: Any, split: str | None, subset: str | None
                 ) -> tuple[list[str] | None, dict[str, Any]]:
    """Names to evaluate (None = all) and a description of the selection for the report."""
    if split is None:
        if subset not in (None, "all"):
            raise ConfigError(f"subset {subset} needs a split (a split file or name)")
        return None, {}
    if subset is not None and subset not in SUBSETS:
        raise ConfigError(f"subset must be one of {', '.join(SUBSETS)}; got {subset!r}")
    chosen = resolve_split(split)
    subset = subset or "val"
    names = {"train": chosen.train, "val": chosen.val, "all": chosen.train + chosen.val}[subset]
    listed = set(dataset.names) | {p.name for p in dataset.problems}
    if names and not listed & set(names):
        raise ConfigError(
            f"none of the {len(names)} {subset} images of split {split!r} is in {dataset.root}; "
            "is it the split of this dataset?"
        )
    return sorted(names), {"split": split, "subset": subset}


def load_model_predict(model: str | Path, device: str = "cpu",
                       options: SegmentOptions | str | None = None, semantic: bool = False,
                       checkpoint: Path | None = None
                       ) -> tuple[Callable[[Any, str], Any], dict[str, Any]]:
    """Load ``model`` and return its ``predict(image, name)`` function and its settings
    (``options``: a :class:`SegmentOptions`, or just a precision name)."""
    from sac.pipeline.segmenter import load_segmenter

    if isinstance(options, str):
        options = SegmentOptions(precision=options)
    segmenter = load_segmenter(model, device, options, checkpoint)

    def predict(image: Any, name: str) -> Any:
        return segmenter.segment(image, name, semantic=semantic)

    return predict, segmenter.config_dict()


def evaluate(data: str | Path, format: str, *, model: str | Path | None = None,
             predictions: str | Path | None = None, split: str | None = None,
             subset: str | None = None, limit: int | None = None, device: str = "cpu",
             options: SegmentOptions | None = None, semantic: bool = False,
             checkpoint: Path | None = None, progress: bool = False) -> EvaluationReport:
    """Score ``model`` (a shipped name or folder, run with ``options``) or the label images
    in ``predictions`` on the images of ``data`` (layout ``format``: ``monuseg``,
    ``dsb2018`` or ``folder``) that ``split``'s ``subset`` (default ``val``) names, at most
    ``limit``. The report's ``model`` records the model and its settings."""
    if (model is None) == (predictions is None):
        raise ConfigError("pass exactly one of model= and predictions=")
    dataset = open_dataset(Path(data), format)
    names, selection = select_names(dataset, split, subset)
    predict, record = None, None
    if model is not None:
        options = options or SegmentOptions()
        predict, config = load_model_predict(model, device, options, semantic, checkpoint)
        record = {"model": str(model), "device": device, "precision": options.precision,
                  "config": config}
    report = evaluate_dataset(dataset, predict=predict, predictions_dir=predictions,
                              progress=progress, names=names, limit=limit)
    report.dataset.update({"format": format, **selection})
    if model is not None:
        report.predictions = f"model {model}"
    report.model = record
    return report
