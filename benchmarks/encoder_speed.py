"""Image-encoder speed: milliseconds per image for lite_medsam (256x256) and vit_b (1024x1024).

Batch 1 and 4, fp32 and bf16 autocast, torch threads = cores. vit_b uses random weights (speed
does not depend on the values). Run: ``.venv/bin/python benchmarks/encoder_speed.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from sac.core.device import autocast_context
from sac.sam.backbones import build_sam, get_spec

from bench_common import machine_info, write_results


def time_encoder(name: str, batch: int, bf16: bool, repeats: int) -> dict[str, object]:
    spec = get_spec(name)
    model = build_sam(spec).eval()
    x = torch.rand(batch, 3, spec.image_size, spec.image_size)
    device = torch.device("cpu")
    times = []
    with torch.inference_mode():
        with autocast_context(device, bf16):
            model.encode(x)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            with autocast_context(device, bf16):
                model.encode(x)
            times.append(time.perf_counter() - t0)
    per_image = [1000 * t / batch for t in times]
    return {
        "backbone": name, "input": f"{spec.image_size}x{spec.image_size}", "batch": batch,
        "precision": "bf16 autocast" if bf16 else "fp32", "repeats": repeats,
        "ms_per_image_median": round(statistics.median(per_image), 1),
        "ms_per_image_min": round(min(per_image), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats-lite", type=int, default=5)
    parser.add_argument("--repeats-vit-b", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    start = machine_info()  # commit and load before the measurements
    rows = []
    for name, repeats in (("lite_medsam", args.repeats_lite), ("vit_b", args.repeats_vit_b)):
        for batch in (1, 4):
            for bf16 in (False, True):
                row = time_encoder(name, batch, bf16, repeats)
                print(row, flush=True)
                rows.append(row)
    cols = ["backbone", "input", "batch", "precision", "repeats", "ms_per_image_median",
            "ms_per_image_min"]
    info = {**start, "load_average_1min_at_end": machine_info()["load_average_1min_now"]}
    js, md = write_results("encoder_speed", info, rows, cols,
                           "Image-encoder speed (ms per image)")
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
