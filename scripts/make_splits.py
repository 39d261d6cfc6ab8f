"""Regenerate the built-in train/validation splits in ``src/sac/data/splits/`` (maintainers only).

Usage::

    .venv/bin/python scripts/make_splits.py [--data ../shared/data] [--overwrite]

MoNuSeg: only the image file names are used (the organ comes from the TCGA site code).
DSB 2018: every image is read once to get its type (fluorescence / brightfield / histology),
the category the split is stratified by. The JSON files hold image names, these categories and
split metadata, nothing else. The result is deterministic (see ``sac.data.splits``).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from sac import __version__
from sac.core.images import DARK_BACKGROUND, GRAY_COLOUR
from sac.data import DSB2018Dataset, MoNuSegDataset
from sac.data.splits import (
    HELD_OUT_ORGANS,
    bbbc039_well,
    bitdepth_tissue,
    classify_dsb,
    group_split,
    monuseg_organ,
    split_dsb,
    split_monuseg,
    split_monuseg_organs,
    write_split,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "sac" / "data" / "splits"
SEED = 0


def _counts(groups: dict[str, str], train: list[str], val: list[str]) -> dict[str, dict[str, int]]:
    tr, va = Counter(groups[n] for n in train), Counter(groups[n] for n in val)
    return {g: {"train": tr[g], "val": va[g]} for g in sorted(set(groups.values()))}


def make_monuseg(data: Path, overwrite: bool) -> None:
    ds = MoNuSegDataset(data / "monuseg" / "train")
    names = sorted([*ds.names, *(p.name for p in ds.problems)])
    fraction = 0.2
    train, val = split_monuseg(names, fraction=fraction, seed=SEED)
    organs = {n: monuseg_organ(n) for n in names}
    meta = {
        "dataset": "monuseg",
        "source": "MoNuSeg 2018 training set (monuseg/train/images)",
        "method": "sac.data.splits.split_monuseg: whole images held out, one per organ first",
        "seed": SEED,
        "fraction": fraction,
        "n_train": len(train),
        "n_val": len(val),
        "organ_counts": _counts(organs, train, val),
        "sac_version": __version__,
    }
    _write(OUT / "monuseg.json", train, val, meta, overwrite)
    train, val = split_monuseg_organs(names)
    meta = {
        "dataset": "monuseg",
        "source": "MoNuSeg 2018 training set (monuseg/train/images)",
        "method": "sac.data.splits.split_monuseg_organs: organs held out entirely",
        "held_out_organs": list(HELD_OUT_ORGANS),
        "n_train": len(train),
        "n_val": len(val),
        "organ_counts": _counts(organs, train, val),
        "sac_version": __version__,
    }
    _write(OUT / "monuseg-organs.json", train, val, meta, overwrite)


def make_dsb(data: Path, overwrite: bool) -> None:
    ds = DSB2018Dataset(data / "dsb2018" / "stage1_train")
    if ds.problems:
        raise SystemExit(f"unexpected problems in the DSB folder: {ds.problems[:3]}")
    types = classify_dsb(ds)
    fraction = 0.15
    train, val = split_dsb(types, fraction=fraction, seed=SEED)
    meta = {
        "dataset": "dsb2018",
        "source": "2018 Data Science Bowl stage1_train (BBBC038)",
        "method": "sac.data.splits.split_dsb: stratified by image type (dsb_image_type)",
        "seed": SEED,
        "fraction": fraction,
        "n_train": len(train),
        "n_val": len(val),
        "type_thresholds": {"dark_background": DARK_BACKGROUND, "gray_colour": GRAY_COLOUR},
        "type_counts": _counts(types, train, val),
        "types": dict(sorted(types.items())),
        "sac_version": __version__,
    }
    _write(OUT / "dsb2018.json", train, val, meta, overwrite)


def make_groups(data: Path, overwrite: bool) -> None:
    """BBBC039 by plate well (~15 %), BitDepth_NucSeg by tissue (one of five)."""
    from sac.data.folders import FolderDataset

    for name, folder, group, fraction, what in (
            ("bbbc039", "bbbc039", bbbc039_well, 0.15, "plate wells"),
            ("bitdepth", "bitdepth_nucseg", bitdepth_tissue, 0.2, "tissues")):
        ds = FolderDataset(data / folder)
        groups = {n: group(n) for n in ds.names}
        train, val = group_split(groups, fraction, SEED)
        meta = {"dataset": folder, "source": f"{folder}/images (see its SOURCE.md)",
                "method": f"sac.data.splits.group_split: whole {what} held out",
                "seed": SEED, "fraction": fraction, "n_train": len(train), "n_val": len(val),
                "held_out": sorted({groups[n] for n in val}),
                "group_counts": _counts(groups, train, val), "sac_version": __version__}
        _write(OUT / f"{name}.json", train, val, meta, overwrite)


def _write(path: Path, train: list[str], val: list[str], meta: dict, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise SystemExit(f"{path} exists; pass --overwrite")
    write_split(path, train, val, meta)
    print(f"wrote {path}: {len(train)} train, {len(val)} val")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    make_monuseg(args.data, args.overwrite)
    make_dsb(args.data, args.overwrite)
    make_groups(args.data, args.overwrite)


if __name__ == "__main__":
    main()
