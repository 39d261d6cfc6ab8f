"""Seconds per corrective click (the napari plugin's Correct widget) on 1000 x 1000 H&E images.

For each MoNuSeg validation image: segment it with the default model, then click as a user
would: a positive click at the centre of each of up to ``--clicks`` true nuclei that SAC
missed (no label under the centre), and a negative click in the middle of as many of SAC's
nuclei that match no true nucleus. Every click goes through
:class:`sac.pipeline.interactive.Corrector`, as in the plugin: its SAM tiles are embedded once
when correcting starts (``embed_s``, as the Correct widget's Start does), then each click runs
the mask decoder only.

Run: ``.venv/bin/python benchmarks/clicks.py``. Writes ``results/clicks.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy import ndimage as ndi

from sac.pipeline.interactive import EMBEDDINGS, Corrector
from sac.pipeline.segmenter import load_segmenter

from bench_common import machine_info, validation_set, write_results


def click_targets(gt: np.ndarray, pred: np.ndarray, n: int) -> list[tuple[bool, float, float]]:
    """(positive, x, y): missed true nuclei (positive) and unmatched predictions (negative)."""
    out: list[tuple[bool, float, float]] = []
    ids = np.unique(gt)[1:]
    for (cy, cx), k in zip(ndi.center_of_mass(gt > 0, gt, ids), ids, strict=True):
        r, c = int(cy), int(cx)
        if gt[r, c] == k and pred[r, c] == 0:
            out.append((True, cx, cy))
    pos = out[:n]
    neg = []
    for k in np.unique(pred)[1:]:
        own = pred == k
        if not (gt[own] > 0).mean() > 0.5:  # mostly background: a false nucleus
            dist = ndi.distance_transform_edt(own)
            r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
            neg.append((False, float(c), float(r)))
    return pos + neg[:n]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clicks", type=int, default=10, help="positive and negative, per image")
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args()
    dataset, names = validation_set("monuseg", limit=args.limit)
    seg = load_segmenter("sac-lite-monuseg")
    later: list[float] = []
    embeds: list[float] = []
    rows: list[dict[str, object]] = []
    for name in names:
        s = dataset[name]
        EMBEDDINGS.clear()  # a new image: nothing cached
        t0 = time.perf_counter()
        res = seg.segment(s.image, name)
        seg_s = time.perf_counter() - t0
        cor = Corrector(seg, s.image, res.labels, res.size.scale)
        t0 = time.perf_counter()
        cor.embed_all()
        embed_s = time.perf_counter() - t0
        times = []
        for positive, x, y in click_targets(s.labels, res.labels, args.clicks):
            t = time.perf_counter()
            cor.add(x, y) if positive else cor.remove(x, y)
            times.append(time.perf_counter() - t)
        embeds.append(embed_s)
        later += times
        rows.append({"image": name, "segment_s": round(seg_s, 2), "embed_s": round(embed_s, 2),
                     "tiles": cor.encoded, "clicks": len(times),
                     "median_click_s": round(statistics.median(times), 3) if times else "",
                     "max_click_s": round(max(times), 3) if times else ""})
        print(rows[-1], flush=True)
    rows.append({"image": "all", "embed_s": round(statistics.median(embeds), 2),
                 "clicks": len(later), "median_click_s": round(statistics.median(later), 3),
                 "p90_click_s": round(float(np.percentile(later, 90)), 3),
                 "max_click_s": round(max(later), 3)})
    info = {**machine_info(), "model": "sac-lite-monuseg", "images": len(names),
            "note": "embed_s: all SAM tiles of the image embedded once (the Correct widget's "
                    "Start); click times after that (positive: decode and paste one nucleus; "
                    "negative: remove or re-decode one)"}
    cols = ["image", "segment_s", "embed_s", "tiles", "clicks", "median_click_s",
            "p90_click_s", "max_click_s"]
    write_results("clicks", info, rows, cols, "Seconds per corrective click")


if __name__ == "__main__":
    main()
