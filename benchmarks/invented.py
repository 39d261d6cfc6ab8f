"""Invented nuclei: how many nuclei a model outlines where there are none.

Two kinds of nucleus-free image, each segmented with the default settings (automatic scale,
as a new user would run ``sac segment``):

* **real**: the parts of the built-in validation images farther than ``--free`` times the
  image's median nucleus diameter (the size statistic of :mod:`sac.pipeline.size` on its
  labels) from every labelled nucleus. Predicted nuclei whose centroid falls there are
  counted, per megapixel of such area over all images. The same run gives each image's AJI,
  so a model that invents fewer nuclei by missing real ones shows it: the row's AJI, PQ, DSB
  score, object F1 and pixel Dice are the per-image means over all validation images, at
  the settings of ``sac segment`` (``scale_notes``: images whose scale choice carries a
  note, such as a reading too weak to resample by).
* **synthetic**: ``--synthetic`` images of each kind of :mod:`sac.training.negatives`
  (fat, fibrous stroma, glass with dust) in two fixed palettes, H&E (white glass, eosin
  tissue) and fluorescence (black background, dim autofluorescence), ``--size`` pixels
  square, uint8 as a file would hold them. Models trained with synthetic negatives saw
  crops of the same generator (other seeds, their own training images' colours), so the
  real rows are the fairer test for them. ``invented_area_pct`` is the share of the
  nucleus-free pixels they cover, ``median_invented_px`` their median area in input pixels
  (a scale estimate fooled into shrinking the image shows here as giant blobs).

Run: ``.venv/bin/python benchmarks/invented.py --dataset monuseg --model sac-lite-monuseg
[--model NAME=MODEL_DIR ...] --bf16 [--tag T]``. Writes
``results/invented/invented_<dataset>[_<tag>].{json,md}``: one row per model and set.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from sac.metrics import aggregate, evaluate_pair
from sac.pipeline.segmenter import load_segmenter
from sac.pipeline.size import MIN_DIAMETER, MIN_OBJECTS, label_diameters, weighted_median

try:
    from sac.training.negatives import KINDS, Palette, synthetic_negative
except ImportError:  # scoring an older checkout (PYTHONPATH=old/src): this checkout's images
    import importlib.util
    from pathlib import Path

    _file = Path(__file__).resolve().parents[1] / "src" / "sac" / "training" / "negatives.py"
    _spec = importlib.util.spec_from_file_location("sac_negatives", _file)
    _neg = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
    sys.modules["sac_negatives"] = _neg  # dataclasses look their module up
    _spec.loader.exec_module(_neg)  # type: ignore[union-attr]
    KINDS, Palette, synthetic_negative = _neg.KINDS, _neg.Palette, _neg.synthetic_negative

from bench_common import bf16_of, machine_info, validation_parser, validation_set, write_results

COLUMNS = ["model", "set", "images", "free_mpx", "true_nuclei", "predicted",
           "invented_per_mpx", "invented_area_pct", "median_invented_px", "aji", "pq",
           "dsb_score", "f1_obj", "pixel_dice", "scale_notes", "seconds"]
PALETTES = {
    "he": Palette(glass=np.array([0.96, 0.95, 0.97], np.float32),
                  tissue=np.array([0.85, 0.45, 0.65], np.float32), bright=True),
    "fluorescence": Palette(glass=np.array([0.02, 0.02, 0.02], np.float32),
                            tissue=np.array([0.12, 0.12, 0.12], np.float32), bright=False),
}


def free_mask(labels: np.ndarray, factor: float) -> np.ndarray:
    """Pixels farther than ``factor`` median nucleus diameters from every labelled pixel
    (all False for an image with too few nuclei to measure)."""
    d = label_diameters(labels)
    d = d[d >= MIN_DIAMETER]
    if d.size < MIN_OBJECTS:
        return np.zeros(labels.shape, bool)
    return ndi.distance_transform_edt(labels == 0) > factor * weighted_median(d)


def centroids_in(pred: np.ndarray, mask: np.ndarray) -> tuple[int, int]:
    """Predicted nuclei whose centroid lies in ``mask``, and their pixels in it."""
    ids = np.unique(pred[pred > 0])
    if ids.size == 0:
        return 0, 0
    cy, cx = np.asarray(ndi.center_of_mass(np.ones_like(pred), pred, ids)).T
    inside = mask[np.rint(cy).astype(int), np.rint(cx).astype(int)]
    pix = int(np.isin(pred, ids[inside]).sum()) if inside.any() else 0
    return int(inside.sum()), pix


def real_rows(name: str, seg: Any, dataset: Any, names: list[str], factor: float
              ) -> dict[str, Any]:
    """The real nucleus-free parts of the validation images."""
    t0, free_px, invented, inv_pix, true_n, scores = time.perf_counter(), 0, 0, 0, 0, []
    notes = 0
    for n in names:
        s = dataset[n]
        res = seg.segment(s.image, n)
        pred = res.labels
        notes += bool(res.size is not None and res.size.note)
        mask = free_mask(s.labels, factor)
        k, pix = centroids_in(pred, mask)
        free_px += int(mask.sum())
        invented += k
        inv_pix += pix
        true_n += len(np.unique(s.labels[s.labels > 0]))
        scores.append(evaluate_pair(s.labels, pred))
    mpx = free_px / 1e6
    agg = aggregate(scores)
    return {"model": name, "set": f"real (> {factor:g} diameters from any nucleus)",
            "images": len(names), "free_mpx": round(mpx, 3), "true_nuclei": true_n,
            "predicted": invented,
            "invented_per_mpx": round(invented / mpx, 1) if mpx else None,
            "invented_area_pct": round(100 * inv_pix / free_px, 2) if free_px else None,
            **{k: round(float(agg[k]), 4) for k in ("aji", "pq", "dsb_score", "f1_obj",
                                                      "pixel_dice")},
            "scale_notes": notes, "seconds": round(time.perf_counter() - t0, 1)}


def synthetic_rows(name: str, seg: Any, count: int, size: int) -> list[dict[str, Any]]:
    """The synthetic negatives, one row per palette and kind."""
    rows = []
    for pal_name, pal in PALETTES.items():
        for kind in KINDS:
            t0, found, pix, areas = time.perf_counter(), 0, 0, []
            for i in range(count):
                rng = np.random.default_rng([2026, KINDS.index(kind), i])
                rgb = synthetic_negative(size, pal, rng, kind)
                img = np.rint(rgb * 255).astype(np.uint8)
                labels = seg.segment(img, f"{kind}{i}").labels
                found += int(len(np.unique(labels)) - 1)
                pix += int((labels > 0).sum())
                counts = np.bincount(labels.ravel())[1:]
                areas += counts[counts > 0].tolist()
            mpx = count * size * size / 1e6
            rows.append({"model": name, "set": f"synthetic {pal_name} {kind}",
                         "images": count, "free_mpx": round(mpx, 3), "true_nuclei": 0,
                         "predicted": found, "invented_per_mpx": round(found / mpx, 1),
                         "invented_area_pct": round(100 * pix / (count * size * size), 2),
                         "median_invented_px": round(float(np.median(areas)), 1) if areas
                         else None, "seconds": round(time.perf_counter() - t0, 1)})
    return rows


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", action="append", required=True, metavar="[NAME=]MODEL")
    p.add_argument("--free", type=float, default=3.0,
                   help="nucleus-free: farther than this many median diameters from nuclei")
    p.add_argument("--synthetic", type=int, default=3, help="images per palette and kind")
    p.add_argument("--size", type=int, default=512, help="side of the synthetic images")
    args = p.parse_args()
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    info = machine_info()
    info.update(dataset=args.dataset, validation_images=len(names), free_factor=args.free,
                bf16=bf16_of(args), synthetic_per_kind=args.synthetic, synthetic_size=args.size)
    rows: list[dict[str, Any]] = []
    for item in args.model:
        name, _, path = item.rpartition("=")
        seg = load_segmenter(path, precision=args.precision)
        name = name or path
        rows.append(real_rows(name, seg, dataset, names, args.free))
        print(rows[-1], flush=True)
        rows += synthetic_rows(name, seg, args.synthetic, args.size)
        for r in rows[-2 * len(KINDS):]:
            print(r, flush=True)
    tag = f"_{args.tag}" if args.tag else ""
    write_results(f"invented_{args.dataset}{tag}", info, rows, COLUMNS,
                  f"Invented nuclei: nucleus-free regions of the {args.dataset} validation "
                  "images and synthetic negatives")


if __name__ == "__main__":
    main()
