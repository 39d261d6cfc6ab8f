"""Same labels before and after a change: run ``sac demo`` (with the shipped H&E model, and
zero-shot) and ``sac segment`` with each shipped model from two source trees (a reference
commit and this checkout) and compare the outputs.

For a refactoring that must not change behaviour. The reference commit is checked out into a
temporary git worktree; each tree runs in its own process through the CLI only, so the script
works whatever the package layout of either tree. Compared: the label images (pixel for pixel),
the per-nucleus CSV (text) and the GeoJSON features (parsed). Writes
``benchmarks/results/identical/identical.{json,md}``; exits 1 when anything differs.

    python benchmarks/identical.py --reference d84a334
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from bench_common import DATA, machine_info, write_results

ROOT = Path(__file__).resolve().parents[1]
#: bumped when :func:`outputs` makes other files, so kept reference outputs are made again
OUTPUTS_VERSION = "2"
SPLITS = ROOT / "src" / "sac" / "data" / "splits"
#: shipped model -> (built-in split, how to find a validation image by name)
MODELS = {
    "sac-lite-monuseg": ("monuseg", lambda n: DATA / "monuseg" / "train" / "images" / f"{n}.tif"),
    "sac-lite-dsb2018": ("dsb2018",
                         lambda n: DATA / "dsb2018" / "stage1_train" / n / "images" / f"{n}.png"),
}


def validation_images(split: str, find: Callable[[str], Path], count: int) -> list[Path]:
    """``count`` images spread over the built-in validation split (first, middle, ...)."""
    names = json.loads((SPLITS / f"{split}.json").read_text())["val"]
    step = max(1, len(names) // count)
    return [find(n) for n in names[::step][:count]]


def run(tree: Path, args: list[str], log: Path) -> None:
    """``python -m sac.cli ARGS`` with ``tree/src`` first on the path."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    with log.open("a") as f:
        f.write(f"$ sac {' '.join(args)}\n")
        f.flush()
        proc = subprocess.run([sys.executable, "-m", "sac.cli", *args], env=env, stdout=f,
                              stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"sac {' '.join(args)} failed in {tree} (exit {proc.returncode}); "
                         f"see {log}")


def outputs(tree: Path, out: Path, images: dict[str, list[Path]], stamp: str = "") -> None:
    """Every output this comparison looks at, written by ``tree`` under ``out``; skipped when
    ``out`` holds a finished run with the same ``stamp`` (the reference commit)."""
    done = out / "done.txt"
    if stamp and done.exists() and done.read_text() == stamp:
        return
    if out.exists():
        shutil.rmtree(out)
    log = out / "log.txt"
    out.mkdir(parents=True)
    run(tree, ["demo", "-o", str(out / "demo"), "--overwrite"], log)
    run(tree, ["demo", "-o", str(out / "zero-shot"), "--zero-shot", "--overwrite"], log)
    for model, files in images.items():
        run(tree, ["segment", *map(str, files), "-o", str(out / model), "--model", model,
                   "--save-geojson", "--save-csv", "--overwrite", "--quiet"], log)
    done.write_text(stamp)


def compare(ref: Path, new: Path) -> list[dict[str, object]]:
    """One row per output file: same or not, and the nucleus count."""
    rows: list[dict[str, object]] = []
    skip = ("log.txt", "done.txt")
    for a in sorted(p for p in ref.rglob("*") if p.is_file() and p.name not in skip):
        rel = a.relative_to(ref)
        b = new / rel
        row: dict[str, object] = {"output": str(rel)}
        if not b.exists():
            row.update(identical=False, detail="missing after")
        elif a.suffix == ".tif":
            la, lb = tifffile.imread(a), tifffile.imread(b)
            row.update(identical=bool(la.shape == lb.shape and np.array_equal(la, lb)),
                       nuclei=int(len(np.unique(la)) - (la == 0).any()))
        elif a.suffix == ".geojson":
            fa = json.loads(a.read_text())["features"]
            fb = json.loads(b.read_text())["features"]
            row.update(identical=fa == fb, nuclei=len(fa))
        else:
            row.update(identical=a.read_bytes() == b.read_bytes())
        rows.append(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reference", required=True, help="commit to compare against")
    p.add_argument("--images", type=int, default=3, help="validation images per model")
    p.add_argument("--work", type=Path, default=None,
                   help="keep outputs here; the reference outputs are reused when they are for "
                        "the same commit (default: a temporary folder)")
    p.add_argument("--tag", default="")
    args = p.parse_args()
    images = {m: validation_images(split, find, args.images)
              for m, (split, find) in MODELS.items()}
    missing = [str(f) for files in images.values() for f in files if not f.exists()]
    if missing:
        raise SystemExit(f"validation images not found (is ../shared/data there?): {missing}")
    reference = subprocess.run(["git", "rev-parse", args.reference], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.strip()
    stamp = f"{reference} {OUTPUTS_VERSION}"
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        tree = Path(tmp) / "reference-tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), reference],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            outputs(tree, work / "before", images, stamp)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           check=False, capture_output=True)
        outputs(ROOT, work / "after", images)
        rows = compare(work / "before", work / "after")
    same = all(r["identical"] for r in rows)
    meta = machine_info() | {"reference": args.reference, "all_identical": same,
                             "images": {m: [f.name for f in fs] for m, fs in images.items()}}
    write_results("identical" + args.tag, meta, rows, ["output", "nuclei", "identical"],
                  f"Outputs at {meta['commit']} against {args.reference}")
    print(f"{sum(bool(r['identical']) for r in rows)}/{len(rows)} outputs identical")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
