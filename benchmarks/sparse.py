"""Sparse tiles: images holding only a few nuclei, where the automatic scale has little to go on.

From each validation image, the ``--side`` x ``--side`` window (stepped by half a side) holding
the fewest nuclei, at least 1 and at most ``--most`` (nuclei counted when half their pixels
lie inside); images without such a window are skipped and counted. Each window, and its whole
image, is resampled by each of ``--factors`` as if taken at another magnification, then
segmented with the default settings (automatic scale), as a user would run ``sac segment`` on
a tile of fat or stroma. Per window and factor:

* ``scale ratio``: the scale the segmenter chose over the true one (the model's nucleus size
  over the size statistic of :mod:`sac.pipeline.size` on the *whole* image's labels at that
  factor); ``ok`` when within ``--tolerance``x, or when the model's own scale was kept and
  the result says so (``source == "model"`` with a note); ``in_band``: the true nuclei at
  the chosen scale fall in the band the automatic scale leaves alone (the model's smallest
  training size to 1.6x its median, :func:`sac.pipeline.size.next_scale`), which is all it
  aims for;
* ``aji tile``: the window's AJI against its own labels; ``aji in full``: the AJI of the same
  window cut from the whole image's segmentation (the same nuclei segmented in context).

Run: ``.venv/bin/python benchmarks/sparse.py --dataset dsb2018 --model sac-lite-dsb2018 --bf16
[--limit 50]``. Writes ``results/sparse/sparse_<dataset>[_<tag>].{json,md}`` (a summary row per
factor) and ``..._tiles.json`` (every window).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from sac.core.fileio import atomic_path
from sac.core.resample import resample_image, resample_labels, scaled_shape
from sac.metrics import aji
from sac.pipeline.segmenter import load_segmenter
from sac.pipeline.size import (
    DOWNSCALE_ABOVE,
    MIN_DIAMETER,
    MIN_OBJECTS,
    UPSCALE_BELOW,
    label_diameters,
    weighted_median,
)

from bench_common import (
    RESULTS,
    bf16_of,
    machine_info,
    validation_parser,
    validation_set,
    write_results,
)

COLUMNS = ["model", "factor", "tiles", "nuclei_per_tile", "scale_ok", "in_band",
           "kept_and_said",
           "median_scale_ratio", "worst_scale_ratio", "aji_tile", "aji_in_full",
           "aji_gap", "seconds"]


def sparse_window(labels: np.ndarray, side: int, most: int) -> tuple[int, int, int] | None:
    """(y, x, nuclei) of the window with the fewest nuclei (1..``most``), or None."""
    h, w = labels.shape
    if min(h, w) < side:
        return None
    ids, area = np.unique(labels[labels > 0], return_counts=True)
    total = dict(zip(ids.tolist(), area.tolist(), strict=True))
    best = None
    step = max(1, side // 2)
    for y in range(0, h - side + 1, step):
        for x in range(0, w - side + 1, step):
            win = labels[y:y + side, x:x + side]
            i, a = np.unique(win[win > 0], return_counts=True)
            k = int(sum(ai * 2 >= total[ii] for ii, ai in zip(i.tolist(), a.tolist(),
                                                              strict=True)))
            if 1 <= k <= most and (best is None or k < best[2]):
                best = (y, x, k)
    return best


def true_diameter(labels: np.ndarray) -> float | None:
    d = label_diameters(labels)
    d = d[d >= MIN_DIAMETER]
    return weighted_median(d) if d.size >= MIN_OBJECTS else None


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--side", type=int, default=None,
                   help="window side in input pixels (default: 4x the model's nucleus size "
                        "at the dataset's magnification, at least 96)")
    p.add_argument("--most", type=int, default=10)
    p.add_argument("--factors", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    p.add_argument("--tolerance", type=float, default=1.3)
    args = p.parse_args()
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    seg = load_segmenter(args.model, precision=args.precision)
    cfg = seg.config
    model_d = float(cfg.nucleus_diameter)
    side = args.side or max(96, int(8 * model_d / cfg.input_scale))
    rng = cfg.nucleus_diameter_range
    band = (rng[0] if rng else model_d / UPSCALE_BELOW, model_d * DOWNSCALE_ABOVE)
    tiles: list[dict[str, Any]] = []
    skipped = 0
    t0 = time.perf_counter()
    for n in names:
        s = dataset[n]
        win = sparse_window(s.labels, side, args.most)
        if win is None:
            skipped += 1
            continue
        y, x, k = win
        for f in args.factors:
            shape = scaled_shape(s.labels.shape, f)
            img = resample_image(s.image, f) if f != 1 else s.image
            lab = resample_labels(s.labels, shape) if f != 1 else s.labels
            full_truth = true_diameter(lab)
            if full_truth is None:
                continue
            ys, xs = slice(round(y * f), round((y + side) * f)), slice(round(x * f),
                                                                      round((x + side) * f))
            tile_img, tile_lab = img[ys, xs], lab[ys, xs]
            t1 = time.perf_counter()
            res = seg.segment(np.ascontiguousarray(tile_img), f"{n}@{f}")
            full = seg.segment(img, f"{n}@{f} whole").labels[ys, xs]
            true_scale = model_d / full_truth
            ratio = res.size.scale / true_scale
            at = full_truth * res.size.scale
            tiles.append({"image": n, "factor": f, "nuclei": k, "chosen_scale": res.size.scale,
                          "in_band": bool(band[0] <= at <= band[1]),
                          "true_scale": true_scale, "ratio": ratio, "source": res.size.source,
                          "note": res.size.note, "aji_tile": aji(tile_lab, res.labels),
                          "aji_in_full": aji(tile_lab, full),
                          "seconds": time.perf_counter() - t1})
            print(n, f, k, round(ratio, 2), res.size.source, round(tiles[-1]["aji_tile"], 3),
                  round(tiles[-1]["aji_in_full"], 3), flush=True)
    rows = []
    for f in args.factors:
        sel = [t for t in tiles if t["factor"] == f]
        if not sel:
            continue
        r = np.array([t["ratio"] for t in sel])
        within = np.maximum(r, 1 / r) <= args.tolerance
        said = np.array([t["source"] == "model" and bool(t["note"]) for t in sel])
        rows.append({"model": args.model, "factor": f, "tiles": len(sel),
                     "nuclei_per_tile": round(float(np.mean([t["nuclei"] for t in sel])), 1),
                     "scale_ok": f"{int((within | said).sum())}/{len(sel)}",
                     "in_band": f"{sum(t['in_band'] for t in sel)}/{len(sel)}",
                     "kept_and_said": int((said & ~within).sum()),
                     "median_scale_ratio": round(float(np.median(r)), 3),
                     "worst_scale_ratio": round(float(np.max(np.maximum(r, 1 / r))), 2),
                     "aji_tile": round(float(np.mean([t["aji_tile"] for t in sel])), 4),
                     "aji_in_full": round(float(np.mean([t["aji_in_full"] for t in sel])), 4),
                     "aji_gap": round(float(np.mean([t["aji_in_full"] - t["aji_tile"]
                                                     for t in sel])), 4),
                     "seconds": round(float(sum(t["seconds"] for t in sel)), 1)})
    info = machine_info()
    info.update(dataset=args.dataset, images=len(names), skipped_no_sparse_window=skipped,
                side=side, most=args.most, tolerance=args.tolerance, bf16=bf16_of(args),
                seconds=round(time.perf_counter() - t0, 1))
    tag = f"_{args.tag}" if args.tag else ""
    write_results(f"sparse_{args.dataset}{tag}", info, rows, COLUMNS,
                  f"Sparse tiles of the {args.dataset} validation images at several "
                  "magnifications")
    with atomic_path(RESULTS / f"sparse_{args.dataset}{tag}_tiles.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(tiles, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
