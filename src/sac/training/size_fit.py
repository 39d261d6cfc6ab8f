"""Fitting the size head (:mod:`sac.model.size_head`) on a model's training images.

Each training image is shown at a range of magnifications (:data:`FACTORS` of the training
data's, then resampled by the model's input scale, as ``sac segment`` would), and the style
vector of each view is paired with the log of its true median nucleus diameter at that view
(the statistic of :mod:`sac.pipeline.size`). A ridge regression on the standardised styles is
fitted; its penalty is chosen on the validation images when there are any.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from sac.core.errors import SACError
from sac.core.images import to_rgb_float
from sac.core.resample import resample_image
from sac.data.base import SampleDataset
from sac.model.build import SACModel
from sac.model.size_head import SizeHead, image_style
from sac.pipeline.size import MIN_DIAMETER, MIN_OBJECTS, label_diameters, weighted_median

log = logging.getLogger(__name__)

#: magnifications each training image is shown at, relative to the training data's
FACTORS = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0)
#: ridge penalties tried (on standardised styles)
PENALTIES = (0.1, 1.0, 10.0, 100.0)
MAX_IMAGES = 60  # training images used at most (spread over the list): enough, and quick


def size_rows(model: SACModel, dataset: SampleDataset, names: list[str],
              factors: tuple[float, ...] = FACTORS) -> tuple[np.ndarray, np.ndarray]:
    """(styles (N, D), log diameters (N,)) over ``names`` x ``factors``; images with too few
    nuclei, and views too small to hold three training-size nuclei across, are left out."""
    s0, md = model.config.input_scale, model.config.nucleus_diameter or 0.0
    styles, targets = [], []
    for name in names:
        try:
            sample = dataset[name]
            d = label_diameters(sample.labels)
            rgb = to_rgb_float(sample.image, name)
        except (SACError, ValueError, OSError) as exc:  # reported by the loader already
            log.warning("size head: skipping %s: %s", name, exc)
            continue
        d = d[d >= MIN_DIAMETER]
        if d.size < MIN_OBJECTS:
            continue
        for f in factors:
            view = resample_image(rgb, f * s0, name)
            if min(view.shape[:2]) < max(32.0, 3 * md):
                continue
            styles.append(image_style(model.generator, view))
            targets.append(np.log(weighted_median(d) * f * s0))
    dim = 2 * sum(model.config.generator_widths)
    return np.array(styles).reshape(-1, dim), np.array(targets, np.float64)


def ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> SizeHead:
    """Ridge regression of ``y`` on standardised ``x`` (the intercept is not penalised)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    w = np.linalg.solve(z.T @ z + penalty * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return SizeHead(mean, std, w, float(y.mean()))


def errors(head: SizeHead, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Median and 90th percentile of |log error|, and the share within 1.5x of the truth."""
    err = np.abs(np.log([head.predict(s) for s in x]) - y)
    return {"median_abs_log_error": round(float(np.median(err)), 4),
            "p90_abs_log_error": round(float(np.percentile(err, 90)), 4),
            "within_1.5x": round(float(np.mean(err < np.log(1.5))), 4)}


def spread(names: list[str], n: int) -> list[str]:
    """At most ``n`` of ``names``, evenly spread (so every part of a sorted list is used)."""
    if len(names) <= n:
        return list(names)
    return [names[i] for i in np.linspace(0, len(names) - 1, n).round().astype(int)]


def spread_by_source(dataset: SampleDataset, names: list[str], n: int) -> list[str]:
    """:func:`spread` within each source of ``dataset``, ``n`` shared equally among them, so
    a mixed dataset's small part is not left out."""
    groups: dict[str, list[str]] = {}
    source = getattr(dataset, "source_of", lambda _: "")  # any mapping of name -> sample
    for name in names:
        groups.setdefault(source(name), []).append(name)
    share = max(1, n // max(1, len(groups)))
    return [m for key in sorted(groups) for m in spread(groups[key], share)]


def fit_size_head(model: SACModel, dataset: SampleDataset, train: list[str],
                  val: list[str] | None = None, max_images: int = MAX_IMAGES
                  ) -> tuple[SizeHead, dict[str, Any]]:
    """Fit the head on ``train`` (at most ``max_images``), the penalty chosen on ``val`` (the
    most views within 1.5x, then the lowest median error; 10 without ``val``). Returns the
    head and the record for ``config.json``'s ``size_head``."""
    if model.config.nucleus_diameter is None:
        raise ValueError("the model records no nucleus size; set it before fitting a size head")
    used = spread_by_source(dataset, train, max_images)
    x, y = size_rows(model, dataset, used)
    if len(y) < 10:
        raise ValueError(f"only {len(y)} usable training views for the size head (images with "
                         f"at least {MIN_OBJECTS} nuclei needed)")
    record: dict[str, Any] = {"factors": list(FACTORS), "train_images": len(used),
                              "train_views": len(y)}
    penalty, scores = 10.0, None
    if val:
        xv, yv = size_rows(model, dataset, spread_by_source(dataset, val, max_images))
        if len(yv):
            results = {p: errors(ridge(x, y, p), xv, yv) for p in PENALTIES}
            penalty = max(PENALTIES, key=lambda p: (results[p]["within_1.5x"],
                                                     -results[p]["median_abs_log_error"]))
            scores = results[penalty]
            record["val_views"] = len(yv)
    head = ridge(x, y, penalty)
    record.update(penalty=penalty, train=errors(head, x, y))
    if scores is not None:
        record["val"] = scores
    log.info("size head: %s", record)
    return head, record


def write_size_head(folder: Path, head: SizeHead, record: dict[str, Any]) -> None:
    """Add (or replace) the size head of the model folder ``folder``: the tensors file and
    ``config.json``'s record, each written to a temporary file and renamed; the folder is
    then loaded once to check it."""
    import json

    from safetensors.torch import save_file

    from sac.core.fileio import atomic_path
    from sac.model.size_head import SIZE_HEAD_FILE
    from sac.model.store import CONFIG_FILE, load_model

    with atomic_path(folder / SIZE_HEAD_FILE, overwrite=True) as tmp:
        save_file(head.state(), str(tmp), metadata={"format": "sac-size-head"})
    path = folder / CONFIG_FILE
    doc = json.loads(path.read_text())
    doc["size_head"] = record
    if "file_sha256" in doc:  # the new file's digest, as save_model records it
        from sac.sam.weights import sha256_of

        doc["file_sha256"][SIZE_HEAD_FILE] = sha256_of(folder / SIZE_HEAD_FILE)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
    load_model(folder)


def add_size_head(folder: Path, dataset: SampleDataset, train: list[str],
                  val: list[str] | None = None, max_images: int = MAX_IMAGES
                  ) -> dict[str, Any]:
    """Fit the size head of the model folder ``folder`` and store it there; the record."""
    from sac.model.store import load_model

    head, record = fit_size_head(load_model(folder), dataset, train, val, max_images)
    write_size_head(folder, head, record)
    return record
