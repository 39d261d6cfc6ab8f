"""When should the automatic scale resample? Per image: AJI at the model's own scale against
AJI after resampling the nuclei to the model's median size, at the images' size and shrunk.

For each validation image (resampled by each of ``--factors``, labels by nearest neighbour),
the model segments it at its own scale (``auto_scale=False``; the size estimate is still
computed) and at the scale that brings the estimated nuclei to the model's median size. The
summary then scores trigger bands: an image is resampled when its estimate lies outside
``[low, high]`` px, and keeps the model's scale inside. The band of ``sac.pipeline.size``
(``UPSCALE_BELOW``, ``DOWNSCALE_ABOVE``) was chosen from this table.

Run: ``.venv/bin/python benchmarks/scale_trigger.py --dataset dsb2018 --model sac-lite-dsb2018
--bf16 --limit 30 --factors 1 0.5`` (per-image rows go to ``--rows``, one JSON line each,
appended, so a stopped run resumes); ``--summarize`` only scores the bands from those rows.
Writes ``results/scale_trigger/scale_trigger_<dataset>.{json,md}``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from sac.core.images import to_rgb_float
from sac.core.resample import resample_image, resample_labels, scaled_shape
from sac.metrics import evaluate_pair
from sac.model import load_model
from sac.pipeline.segmenter import Segmenter

from bench_common import machine_info, validation_parser, validation_set, write_results

LOWS = (0.0, 7.7, 10.0, 12.0, 14.0, 16.0)  # px; 7.7 and 58: the training range widened 1.3x
HIGHS = (58.0, 35.0, 30.0, 26.0)


def measure(args: Any, rows_file: Path) -> None:
    """Append one row per (factor, image) not yet in ``rows_file``."""
    done = {(r["factor"], r["name"]) for r in read_rows(rows_file)}
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    model = load_model(args.model)
    seg = Segmenter(model, precision=args.precision, auto_scale=False)
    median = model.config.nucleus_diameter
    if median is None:
        raise SystemExit(f"{args.model} records no nucleus size")
    with rows_file.open("a") as out:
        for factor in args.factors:
            for name in names:
                if (factor, name) in done:
                    continue
                s = dataset[name]
                rgb = resample_image(to_rgb_float(s.image, name), factor)
                image = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
                gt = resample_labels(s.labels, scaled_shape(s.labels.shape, factor))
                t = time.perf_counter()
                own = seg.segment(image, name)
                row: dict[str, Any] = {"factor": factor, "name": name,
                                       "d_input": own.size.diameter,
                                       "aji_model": evaluate_pair(gt, own.labels)["aji"],
                                       "t_model": time.perf_counter() - t}
                if own.size.diameter is not None:
                    scale = median / own.size.diameter
                    t = time.perf_counter()
                    matched = seg.segment(image, name, scale=scale)
                    row.update(scale=scale, aji_matched=evaluate_pair(gt, matched.labels)["aji"],
                               t_matched=time.perf_counter() - t)
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(row, flush=True)


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def band_aji(rows: list[dict[str, Any]], low: float, high: float) -> float:
    """Mean AJI when images with an estimate outside [low, high] px are resampled."""
    def pick(r: dict[str, Any]) -> float:
        d = r["d_input"]
        outside = d is not None and not low <= d <= high
        return float(r["aji_matched"] if outside else r["aji_model"])
    return float(np.mean([pick(r) for r in rows]))


def summarize(rows: list[dict[str, Any]], median: float) -> list[dict[str, Any]]:
    """One row per band: mean AJI at each factor; plus never / always / per-image best."""
    factors = sorted({r["factor"] for r in rows}, reverse=True)
    by = {f: [r for r in rows if r["factor"] == f] for f in factors}
    table = []
    for low in LOWS:
        for high in HIGHS:
            table.append({"band_px": f"{low:g}-{high:g}",
                          "band_x_median": f"/{median / low:.2f} x{high / median:.2f}"
                          if low else f"none x{high / median:.2f}",
                          **{f"aji_at_{f:g}x": round(band_aji(by[f], low, high), 4)
                             for f in factors}})
    for what, fn in (("never resample", lambda r: r["aji_model"]),
                     ("always resample", lambda r: r.get("aji_matched", r["aji_model"])),
                     ("best per image (oracle)",
                      lambda r: max(r["aji_model"], r.get("aji_matched", r["aji_model"])))):
        table.append({"band_px": what, "band_x_median": "",
                      **{f"aji_at_{f:g}x": round(float(np.mean([fn(r) for r in by[f]])), 4)
                         for f in factors}})
    return table


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--factors", type=float, nargs="+", default=[1.0, 0.5])
    p.add_argument("--rows", type=Path, required=True, help="per-image rows (JSON lines)")
    p.add_argument("--summarize", action="store_true", help="only score the bands")
    p.add_argument("--note", default="", help="recorded with the table (e.g. where rows came from)")
    args = p.parse_args()
    info = machine_info()
    if not args.summarize:
        measure(args, args.rows)
    rows = read_rows(args.rows)
    median = load_model(args.model).config.nucleus_diameter
    table = summarize(rows, median)
    info |= {"note": args.note, "rows": str(args.rows), "dataset": args.dataset,
             "model": args.model, "precision": args.precision,
             "nucleus_diameter": median, "images_per_factor": {
                 f: sum(r["factor"] == f for r in rows) for f in sorted(
                     {r["factor"] for r in rows})}}
    cols = ["band_px", "band_x_median", *[k for k in table[0] if k.startswith("aji_at")]]
    name = f"scale_trigger_{args.dataset}" + (f"_{args.tag}" if args.tag else "")
    _, md = write_results(name, info, table, cols,
                          f"Automatic-scale trigger bands ({args.dataset} validation)")
    print(md.read_text())


if __name__ == "__main__":
    main()
