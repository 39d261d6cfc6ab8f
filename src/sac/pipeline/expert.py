"""Expert prompts: points a person clicked (e.g. in napari or QuPath), read from a CSV file.

A CSV has a header with columns ``x`` and ``y`` (pixels of the input image, column and row) and
optionally ``label`` (1 = nucleus here, 0 = no nucleus here; default 1). Other columns are
ignored, so an exported point table works as is.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sac.core.errors import InputError


@dataclass
class ExpertPrompts:
    """Clicked points ``(x, y)`` in input-image pixels with labels 1 (positive) / 0."""

    points: np.ndarray  # (N, 2) float32
    labels: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, np.float32).reshape(-1, 2)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        if len(self.points) != len(self.labels):
            raise InputError(f"{len(self.points)} expert points but {len(self.labels)} labels")
        if not np.isin(self.labels, (0, 1)).all():
            raise InputError("expert point labels must be 1 (nucleus) or 0 (background)")

    def scaled(self, scale: float) -> ExpertPrompts:
        """The same points in an image resampled by ``scale``."""
        return ExpertPrompts((self.points + 0.5) * scale - 0.5, self.labels.copy())

    def check_inside(self, shape: tuple[int, int], source: str) -> None:
        h, w = shape
        p = self.points
        bad = np.flatnonzero((p[:, 0] < 0) | (p[:, 1] < 0) | (p[:, 0] > w - 1) | (p[:, 1] > h - 1))
        if bad.size:
            x, y = p[bad[0]]
            raise InputError(f"{source}: expert point ({x:g}, {y:g}) lies outside the {w}x{h} "
                             f"image ({bad.size} point(s) outside)")


def read_expert_csv(path: str | Path) -> ExpertPrompts:
    """Read a points CSV (see the module docstring); errors name the file and the row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read expert prompts {path}: {exc}") from None
    rows = list(csv.DictReader(text.splitlines()))
    if not text.strip():
        raise InputError(f"expert prompts {path} is empty; expected a header with x,y[,label]")
    fields = {f.strip().lower(): f for f in (csv.DictReader(text.splitlines()).fieldnames or [])}
    if "x" not in fields or "y" not in fields:
        raise InputError(f"expert prompts {path}: the header needs columns x and y (found "
                         f"{sorted(fields)})")
    pts, lbl = [], []
    for i, row in enumerate(rows, start=2):
        try:
            x, y = float(row[fields["x"]]), float(row[fields["y"]])
            raw = row.get(fields["label"], "1") if "label" in fields else "1"
            lab = int(float(raw)) if raw not in (None, "") else 1
        except (TypeError, ValueError):
            raise InputError(f"expert prompts {path}, line {i}: x, y and label must be "
                             f"numbers; got {dict(row)}") from None
        if not (np.isfinite(x) and np.isfinite(y)) or lab not in (0, 1):
            raise InputError(f"expert prompts {path}, line {i}: need finite x, y and label 0 "
                             f"or 1; got {dict(row)}")
        pts.append((x, y))
        lbl.append(lab)
    return ExpertPrompts(np.array(pts, np.float32).reshape(-1, 2), np.array(lbl, np.int64))


def apply_expert(det: np.ndarray, expert: ExpertPrompts, radius: float | None = None
                 ) -> np.ndarray:
    """Detections edited by clicks: a negative click removes the nucleus under it; a positive
    click on background adds a nucleus there, a disk of the median detected radius (``radius``
    if given) on free pixels, which SAM then delineates."""
    det = det.copy()
    h, w = det.shape
    xy = np.clip(np.rint(expert.points).astype(np.int64), 0, [w - 1, h - 1])
    for (x, y), lab in zip(xy.tolist(), expert.labels.tolist(), strict=True):
        if lab == 0 and det[y, x]:
            det[det == det[y, x]] = 0
    if radius is None:
        areas = np.bincount(det.ravel())[1:]
        areas = areas[areas > 0]
        radius = float(np.sqrt(np.median(areas) / np.pi)) if areas.size else 6.0
    r = max(2, round(radius))
    next_id = int(det.max()) + 1
    for (x, y), lab in zip(xy.tolist(), expert.labels.tolist(), strict=True):
        if lab == 1 and not det[y, x]:
            y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, h), max(x - r, 0), min(x + r + 1, w)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            disk = ((yy - y) ** 2 + (xx - x) ** 2 <= r * r) & (det[y0:y1, x0:x1] == 0)
            det[y0:y1, x0:x1][disk] = next_id
            next_id += 1
    return det


def expert_for(prompts: Path | None, stem: str) -> ExpertPrompts | None:
    """The clicks for the input whose outputs are named ``stem``: from ``prompts``, one CSV
    file, or ``<stem>.csv`` in a folder of them (None when that file is not there or holds
    no click)."""
    if prompts is None:
        return None
    if prompts.is_dir():
        csv_file = prompts / f"{stem}.csv"
        if not csv_file.is_file():
            return None
        prompts = csv_file
    clicks = read_expert_csv(prompts)
    # a header without clicks is no clicks: the image is segmented as without --prompts
    return clicks if len(clicks.points) else None
