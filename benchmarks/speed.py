"""Speed and memory: seconds per 1000x1000 H&E image end to end, against SAM-style automatic
mask generation (AMG) with the same encoder, on this CPU.

For each image (MoNuSeg validation images, 1000x1000): read the file, segment, write
``<stem>_labels.tif``; time each stage (read, generator, prompts, encoder, decoder,
post-processing, write). AMG runs on the same tiles with the same encoder and decoder: a
32x32 grid of single-point prompts per tile, every mask decoded on the full embedding grid,
masks under a predicted IoU of 0.7 dropped, the rest de-duplicated by the same merge. Both
results are scored against the ground truth. Peak memory is the process's maximum resident
set size.

Run: ``.venv/bin/python benchmarks/speed.py --model PATH [--limit 2] [--bf16]``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from sac.cli.common import add_precision
from sac.core.images import to_rgb_float
from sac.core.labels import InstanceMask, crop_to_content
from sac.core.resample import resample_image, resample_labels
from sac.core.tiles import owned_tiles
from sac.data import MoNuSegDataset
from sac.data.images import read_image
from sac.data.splits import load_builtin_split
from sac.metrics import evaluate_pair
from sac.model import load_model
from sac.outputs.images import write_labels_tif
from sac.pipeline.merge import merge_instances
from sac.pipeline.segmenter import Segmenter

from bench_common import bf16_of, machine_info, write_results

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "monuseg" / "train"
AMG_GRID = 32
AMG_MIN_IOU = 0.7


def amg_labels(seg: Segmenter, image: np.ndarray, batch: int = 64) -> tuple[np.ndarray, float]:
    """SAM-style automatic mask generation with the segmenter's encoder and decoder."""
    t0 = time.perf_counter()
    rgb0 = to_rgb_float(image)
    rgb = resample_image(rgb0, seg.config.input_scale)
    shape = rgb.shape[:2]
    pred = seg.predictor
    masks: list[InstanceMask] = []
    for owned in owned_tiles(shape, seg.sam_tile, seg.overlap):
        ys, xs = owned.tile.slices(shape)
        pred.set_image(rgb[ys, xs], normalized=True, upscale=False)
        h, w = ys.stop - ys.start, xs.stop - xs.start
        gy, gx = np.meshgrid((np.arange(AMG_GRID) + 0.5) * h / AMG_GRID,
                             (np.arange(AMG_GRID) + 0.5) * w / AMG_GRID, indexing="ij")
        pts = np.stack([gx.ravel(), gy.ravel()], 1)[:, None].astype(np.float32)
        lbl = np.ones((len(pts), 1), np.int64)
        for start in range(0, len(pts), batch):
            p = pred.predict(points=pts[start : start + batch], labels=lbl[start : start + batch])
            for m, iou in zip(p.masks[:, 0], p.iou[:, 0], strict=True):
                if iou >= AMG_MIN_IOU and (inst := crop_to_content(m, ys.start, xs.start,
                                                                   float(iou))):
                    masks.append(inst)
    labels = merge_instances(masks, shape, min_area=seg.config.thresholds.min_area)
    return resample_labels(labels, rgb0.shape[:2]), time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--limit", type=int, default=2, help="validation images to time")
    add_precision(p)
    p.add_argument("--no-amg", action="store_true", help="skip the (slow) AMG comparison")
    p.add_argument("--amg-limit", type=int, default=1,
                   help="run AMG on the first N timed images only (it takes minutes each)")
    p.add_argument("--tag", default="")
    args = p.parse_args()
    ds = MoNuSegDataset(args.data)
    names = load_builtin_split("monuseg").val[: args.limit]
    seg = Segmenter(load_model(args.model), precision=args.precision)
    seg.segment(np.zeros((256, 256, 3), np.uint8) + 128)  # warm-up
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for i, name in enumerate(names):
            gt = ds[name].labels
            path = ds.item(name).image
            t0 = time.perf_counter()
            image = read_image(path)
            t_read = time.perf_counter() - t0
            res = seg.segment(image, name)
            t1 = time.perf_counter()
            write_labels_tif(Path(out) / f"{name}_labels.tif", res.labels)
            t_write = time.perf_counter() - t1
            total = time.perf_counter() - t0
            row = {"image": name, "size": f"{image.shape[1]}x{image.shape[0]}",
                   "nuclei": res.n_nuclei, "sac_s": round(total, 2), "read_s": round(t_read, 2)}
            row.update({f"{k}_s": round(v, 2) for k, v in res.timings.items()})
            row["write_s"] = round(t_write, 2)
            m = evaluate_pair(gt, res.labels)
            row.update(sac_aji=round(m["aji"], 4), sac_dice=round(m["pixel_dice"], 4))
            if not args.no_amg and i < args.amg_limit:
                amg, t_amg = amg_labels(seg, image)
                a = evaluate_pair(gt, amg)
                row.update(amg_s=round(t_amg, 2), amg_nuclei=int(amg.max()),
                           amg_aji=round(a["aji"], 4), amg_dice=round(a["pixel_dice"], 4),
                           speedup=round(t_amg / total, 1))
            rows.append(row)
            print(row, flush=True)
    info = machine_info()
    info.update(model=str(args.model), bf16=bf16_of(args),
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                amg=f"{AMG_GRID}x{AMG_GRID} points per tile, predicted IoU >= {AMG_MIN_IOU}")
    cols = ["image", "size", "nuclei", "sac_s", "read_s", "preprocess_s", "generator_s",
            "prompts_s", "encoder_s", "decoder_s", "postprocess_s", "write_s", "sac_aji",
            "amg_s", "amg_nuclei", "amg_aji", "speedup"]
    name = "speed" + (f"_{args.tag}" if args.tag else "")
    _, md = write_results(name, info, rows, cols, "End-to-end speed on 1000x1000 H&E images")
    print(md.read_text())


if __name__ == "__main__":
    main()
