"""Write a dataset's built-in train/validation split as plain TIFF pairs for the peer tools.

Run with SAC's own environment; the peers' environments then read only these files, so every
tool sees exactly the images and labels SAC trains and validates on (read by SAC's dataset
readers, split by the same split file). Layout, outside the repository (the data must never
be committed)::

    OUT/<dataset>/train/images/<name>.tif   RGB uint8
    OUT/<dataset>/train/labels/<name>.tif   uint16/uint32 instance labels, 0 = background
    OUT/<dataset>/val/...                   the same for the validation images
    OUT/<dataset>/manifest.json             names, image types (DSB), split, source folder

    python benchmarks/peers/export.py --dataset monuseg --out ../peers/data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sac.core.labels import label_dtype
from sac.data.open import open_dataset
from sac.data.splits import dsb_image_type, load_builtin_split

from bench_common import DATASETS


def export(dataset: str, out: Path, data: Path | None = None) -> Path:
    """Write ``dataset``'s split under ``out/dataset``; existing files are kept (a rerun
    finishes an interrupted export)."""
    fmt, default = DATASETS[dataset]
    ds = open_dataset(data or default, fmt)
    split = load_builtin_split(dataset)
    root = out / dataset
    types: dict[str, str] = {}
    for part, names in (("train", split.train), ("val", split.val)):
        for sub in ("images", "labels"):
            (root / part / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            img_path = root / part / "images" / f"{name}.tif"
            lab_path = root / part / "labels" / f"{name}.tif"
            if img_path.exists() and lab_path.exists() and name in types:
                continue
            sample = ds[name]
            types[name] = dsb_image_type(sample.image) if dataset == "dsb2018" else "he"
            for path, arr in ((img_path, sample.image),
                              (lab_path, sample.labels.astype(label_dtype(sample.labels)))):
                tmp = path.with_suffix(".tmp.tif")
                tifffile.imwrite(tmp, arr, compression="zlib")
                tmp.replace(path)
    manifest = {"dataset": dataset, "source": str(data or default), "split": dataset,
                "train": list(split.train), "val": list(split.val), "image_types": types}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return root


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    p.add_argument("--out", type=Path, required=True, help="folder outside the repository")
    p.add_argument("--data", type=Path, default=None, help="default: ../shared/data/...")
    args = p.parse_args()
    root = export(args.dataset, args.out, args.data)
    print(f"wrote {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
