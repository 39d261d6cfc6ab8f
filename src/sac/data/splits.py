"""Deterministic train/validation splits (whole images held out), stored as small JSON files.

Determinism: choices never depend on a random-number generator's implementation. Each name gets
the rank ``sha256(f"{seed}:{name}")``; "random" picks take the lowest rank. The result is the
same on every platform and numpy/Python version, and does not depend on the input order.

MoNuSeg (:func:`split_monuseg`): the organ is read from the TCGA tissue-source-site code (the
two characters after ``TCGA-``, see :data:`TCGA_ORGANS`; unknown codes -> ``"unknown"``). About
20% of the images (6 of 30) are held out, one per organ first, for as many organs as possible.
Organs with at least two images are used first (so every held-out organ is still in training),
known before ``"unknown"``, ties broken by rank; further picks again go round the organs while
leaving at least one image of each organ in training where possible.

DSB 2018 (:func:`dsb_image_type`, :func:`split_dsb`): each image gets a type from two numbers
computed on its RGB uint8 version: ``background`` = median of the per-pixel channel mean, and
``colour`` = mean over pixels of (max channel - min channel).

- ``background < 100``                  -> ``"fluorescence"`` (dark background)
- otherwise, ``colour < 5``             -> ``"brightfield"`` (light, gray)
- otherwise                             -> ``"histology"`` (light, coloured, e.g. H&E)

On stage1_train this gives 546 / 16 / 108 images with a wide margin around both thresholds.
Then ~15% of each type (rounded, at least one for types with two or more images) is held out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sac.core.errors import ConfigError, InputError
from sac.core.images import image_type
from sac.data.base import SampleDataset

TCGA_ORGANS: dict[str, str] = {
    "18": "lung", "21": "lung", "38": "lung", "49": "lung", "50": "lung",
    "A7": "breast", "AR": "breast", "E2": "breast",
    "AY": "colon", "NH": "colon",
    "B0": "kidney", "HE": "kidney",
    "CH": "prostate", "G9": "prostate",
    "DK": "bladder", "G2": "bladder",
    "KB": "liver",
    "RD": "stomach",
}  # fmt: skip

SPLIT_FORMAT = "sac-split/1"
#: Splits shipped with the package in ``sac/data/splits/<name>.json`` (see the README there).
BUILTIN_SPLITS: tuple[str, ...] = ("monuseg", "dsb2018", "monuseg-organs", "bbbc039",
                                   "bitdepth")
#: Organs that ``monuseg-organs`` holds out entirely (2 + 2 + 1 + 1 of the 30 images).
HELD_OUT_ORGANS: tuple[str, ...] = ("bladder", "colon", "liver", "stomach")


class Split(NamedTuple):
    """A stored split: image names for training and validation, plus free-form metadata."""

    train: list[str]
    val: list[str]
    meta: dict[str, Any]


def _rank(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def _unique_sorted(names: Iterable[str]) -> list[str]:
    names = list(names)
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate image names: {dupes[:5]}")
    return sorted(names)


def _n_of(fraction: float, n: int) -> int:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    return int(fraction * n + 0.5)  # round half up (Python's round() rounds half to even)


def monuseg_organ(name: str) -> str:
    """Organ of a MoNuSeg/TCGA image name such as ``TCGA-18-5592-01Z-00-DX1`` ("lung")."""
    stem = Path(name).name.upper()
    if not stem.startswith("TCGA-") or len(stem) < 7:
        return "unknown"
    return TCGA_ORGANS.get(stem[5:7], "unknown")


def split_monuseg(
    names: Iterable[str], fraction: float = 0.2, seed: int = 0, n_val: int | None = None
) -> tuple[list[str], list[str]]:
    """Hold out whole images covering as many organs as possible; returns sorted (train, val)."""
    names = _unique_sorted(names)
    if n_val is None:
        n_val = _n_of(fraction, len(names))
    if not 0 <= n_val < max(len(names), 1):
        raise ValueError(f"n_val={n_val} must be >= 0 and smaller than {len(names)} images")
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(monuseg_organ(n), []).append(n)
    for members in groups.values():
        members.sort(key=lambda n: _rank(n, seed))
    order = sorted(
        groups, key=lambda o: (len(groups[o]) < 2, o == "unknown", _rank(f"organ:{o}", seed))
    )
    val: list[str] = []
    for organ in order:  # first round: one image per organ
        if len(val) < n_val:
            val.append(groups[organ].pop(0))
    keep_one = True
    while len(val) < n_val:  # later rounds: keep one image per organ in training if possible
        progressed = False
        for organ in order:
            if len(val) < n_val and len(groups[organ]) > (1 if keep_one else 0):
                val.append(groups[organ].pop(0))
                progressed = True
        if not progressed:
            keep_one = False
    held = set(val)
    return [n for n in names if n not in held], sorted(val)


def split_monuseg_organs(names: Iterable[str], organs: Iterable[str] = HELD_OUT_ORGANS
                         ) -> tuple[list[str], list[str]]:
    """Leave organs out: every image of ``organs`` validates, the rest train, so validation
    measures how a model does on tissue it never saw; returns sorted (train, val)."""
    names, held = _unique_sorted(names), set(organs)
    unknown = held - set(TCGA_ORGANS.values())
    if unknown:
        raise ValueError(f"unknown organ(s) {sorted(unknown)}; MoNuSeg has "
                         f"{sorted(set(TCGA_ORGANS.values()))}")
    val = [n for n in names if monuseg_organ(n) in held]
    return [n for n in names if n not in set(val)], val


def dsb_image_type(image: np.ndarray) -> str:
    """Classify one image as "fluorescence", "brightfield" or "histology" (module docstring;
    the rule is :func:`sac.core.images.image_type`, which ``--model auto`` uses too)."""
    return image_type(image)


def classify_dsb(dataset: SampleDataset) -> dict[str, str]:
    """Image type of every sample of a dataset (reads only the images, not the masks)."""
    return {name: dsb_image_type(dataset.read_image(i)) for i, name in enumerate(dataset.names)}


def stratified_split(
    groups: Mapping[str, str], fraction: float, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Hold out ``fraction`` of each group (name -> group); returns sorted (train, val).

    Per group the count is rounded half up, and is at least 1 when the group has >= 2 names.
    """
    members: dict[str, list[str]] = {}
    for name in _unique_sorted(groups):
        members.setdefault(groups[name], []).append(name)
    val: list[str] = []
    for group in sorted(members):
        ranked = sorted(members[group], key=lambda n: _rank(n, seed))
        k = _n_of(fraction, len(ranked))
        if k == 0 and fraction > 0 and len(ranked) >= 2:
            k = 1
        val.extend(ranked[:k])
    held = set(val)
    return sorted(n for n in groups if n not in held), sorted(val)


def split_dsb(
    types: Mapping[str, str], fraction: float = 0.15, seed: int = 0
) -> tuple[list[str], list[str]]:
    """DSB split stratified by image type (``types`` from :func:`classify_dsb`)."""
    return stratified_split(types, fraction, seed)


def bbbc039_well(name: str) -> str:
    """The plate well of a BBBC039 image (``IXMtest_A02_s1_w1...`` -> ``A02``): sites of one
    well are neighbours and must stay on one side of a split."""
    parts = Path(name).name.split("_")
    return parts[1] if len(parts) > 2 else "unknown"


def bitdepth_tissue(name: str) -> str:
    """The tissue of a BitDepth_NucSeg image (``liver_40x_oil_3`` -> ``liver``): the same
    tissue is imaged at every magnification, so it must stay on one side of a split."""
    return Path(name).name.split("_")[0]


def group_split(groups: Mapping[str, str], fraction: float, seed: int = 0
                ) -> tuple[list[str], list[str]]:
    """Hold out whole groups (name -> group), the lowest-ranked first, until at least
    ``fraction`` of the images validate; returns sorted (train, val)."""
    names = _unique_sorted(groups)
    want = max(1, _n_of(fraction, len(names)))
    val: list[str] = []
    for g in sorted(set(groups.values()), key=lambda g: _rank(f"group:{g}", seed)):
        if len(val) >= want:
            break
        val += [n for n in names if groups[n] == g]
    held = set(val)
    return [n for n in names if n not in held], sorted(val)


def write_split(
    path: str | Path,
    train: Iterable[str],
    val: Iterable[str],
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write a split as JSON (image names only, sorted, plus ``meta``) to ``path``."""
    train_l, val_l = _check_names(list(train), list(val), str(path))
    doc = {"format": SPLIT_FORMAT, "train": train_l, "val": val_l, "meta": dict(meta or {})}
    try:
        text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"split meta must be JSON-serialisable: {exc}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def read_split(path: str | Path) -> Split:
    """Read a split written by :func:`write_split`, checking its structure."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: split file not found; check the path")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a valid JSON split file ({exc}); restore it") from exc
    if not isinstance(doc, dict) or doc.get("format") != SPLIT_FORMAT:
        raise InputError(
            f'{path}: not a split file (expected "format": "{SPLIT_FORMAT}"); '
            "write it with sac.data.splits.write_split"
        )
    train, val, meta = doc.get("train"), doc.get("val"), doc.get("meta", {})
    if not isinstance(train, list) or not isinstance(val, list) or not isinstance(meta, dict):
        raise InputError(f"{path}: 'train' and 'val' must be lists and 'meta' an object")
    train_l, val_l = _check_names(train, val, str(path))
    return Split(train_l, val_l, meta)


def load_builtin_split(name: str) -> Split:
    """Read a split shipped with the package by name (one of :data:`BUILTIN_SPLITS`)."""
    if name not in BUILTIN_SPLITS:
        raise ConfigError(
            f"unknown built-in split {name!r}; use one of {', '.join(BUILTIN_SPLITS)} "
            "or the path of a split JSON file"
        )
    from importlib.resources import as_file, files

    with as_file(files("sac.data") / "splits" / f"{name}.json") as path:
        return read_split(path)


def _check_names(train: list[Any], val: list[Any], source: str) -> tuple[list[str], list[str]]:
    for part, names in (("train", train), ("val", val)):
        if not all(isinstance(n, str) and n for n in names):
            raise InputError(f"{source}: every {part} entry must be a non-empty image name")
        if len(set(names)) != len(names):
            raise InputError(f"{source}: duplicate names in {part}")
    both = sorted(set(train) & set(val))
    if both:
        raise InputError(f"{source}: {len(both)} image(s) in both train and val, e.g. {both[:3]}")
    return sorted(train), sorted(val)
