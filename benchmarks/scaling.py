"""Scaling on one machine: images per minute with 1 and 2 Dask workers, and training steps
per minute with 1 and 2 data-parallel processes, in one run.

Inference rows segment the same images (MoNuSeg validation images, 1000 x 1000 H&E) with the
default model and settings: in this process (torch's own threads), on a Dask ``LocalCluster``
of one worker using every core, and of two workers sharing the cores (one thread each when
there are two cores). The clock runs from the first task to the last file written; cluster
start-up and the workers' model loads are reported apart (``startup_s``) because a long run
pays them once. Training rows run ``sac train`` for a few steps on the MoNuSeg training split
with one process (batch 2) and with ``--nproc 2`` (batch 1 each, the same 2 crops per step);
steps per minute come from the run's own epoch timer, so data loading and validation are out.

Run: ``.venv/bin/python benchmarks/scaling.py``. Writes ``results/scaling/scaling.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sac.batch.settings import SegmentSettings, cached_segmenter
from sac.core.fileio import output_stems

from bench_common import DATASETS, machine_info, validation_set, write_results


def image_files(folder: Path, n: int) -> list[Path]:
    """``n`` validation images as PNG files (repeated if the split has fewer)."""
    import imageio.v3 as iio

    dataset, names = validation_set("monuseg")
    out = []
    for i in range(n):
        path = folder / f"im{i:02d}.png"
        iio.imwrite(path, dataset[names[i % len(names)]].image)
        out.append(path)
    return out


def _warm(settings: SegmentSettings) -> None:
    cached_segmenter(settings)


def inference(files: list[Path], mode: str, workers: int) -> dict[str, Any]:
    """One inference row: images per minute of ``mode`` ("process" or "dask")."""
    from sac.batch.run import run_local

    with tempfile.TemporaryDirectory() as tmp:
        settings = SegmentSettings(output=Path(tmp))
        stems = output_stems(files)
        t0 = time.perf_counter()
        if mode == "process":
            seg = cached_segmenter(settings)
            startup = time.perf_counter() - t0
            t1 = time.perf_counter()
            report = run_local(files, stems, settings, quiet=True, seg=seg)
        else:
            from sac.batch.cluster import open_cluster, run_dask

            cluster = open_cluster(f"local:{workers}")
            warm = settings.replace(threads=cluster.threads)
            cluster.client.run(_warm, warm)  # every worker loads its model
            startup = time.perf_counter() - t0
            t1 = time.perf_counter()
            report = run_dask(cluster, files, stems, settings, quiet=True)
            cluster.close()
        seconds = time.perf_counter() - t1
    assert report.done == len(files), report.failures
    threads = (os.cpu_count() or 1) // workers if mode == "dask" else os.cpu_count()
    return {"task": "segment", "engine": "in process" if mode == "process" else
            f"dask local:{workers}", "workers": workers, "threads_per_worker": threads,
            "items": len(files), "seconds": round(seconds, 1),
            "per_minute": round(60 * len(files) / seconds, 2), "startup_s": round(startup, 1)}


def training(procs: int, steps: int) -> dict[str, Any]:
    """One training row: steps per minute of ``sac train`` with ``procs`` processes."""
    fmt, data = DATASETS["monuseg"]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "sac", "train", "--data", str(data), "--format", fmt,
               "--split", "monuseg", "-o", str(run), "--epochs", "2",
               "--steps-per-epoch", str(steps), "--batch-size", str(2 // procs),
               "--generator-batch", str(8 // procs), "--scale", "0.5", "--bf16",
               "--val-limit", "1", "--no-tune", "--quiet", "--nproc", str(procs)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    seconds = log[-1]["seconds"]  # epoch 2: epoch 1 warms up
    return {"task": "train", "engine": "one process" if procs == 1 else
            f"DDP, {procs} processes (torchrun)", "workers": procs,
            "threads_per_worker": (os.cpu_count() or 1) // procs, "items": steps,
            "seconds": round(seconds, 1), "per_minute": round(60 * steps / seconds, 2),
            "startup_s": round(wall - sum(r["seconds"] for r in log), 1),
            "batch_per_process": 2 // procs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--steps", type=int, default=6, help="timed training steps per row")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = image_files(Path(tmp), args.images)
        for mode, workers in (("process", 1), ("dask", 1), ("dask", 2)):
            rows.append(inference(files, mode, workers))
            print(rows[-1], flush=True)
    for procs in (1, 2):
        rows.append(training(procs, args.steps))
        print(rows[-1], flush=True)
    info = {**machine_info(), "images": f"{args.images} MoNuSeg validation images, "
            "1000 x 1000, default sac segment settings",
            "training": "MoNuSeg train split, --scale 0.5 --bf16, 2 SAM crops + 6 "
                        "generator-only crops per step in total",
            "note": "per_minute: images or steps per minute, timed after start-up; "
                    "startup_s: cluster start and model loads (inference) or data loading "
                    "and validation (training)"}
    cols = ["task", "engine", "workers", "threads_per_worker", "items", "seconds",
            "per_minute", "startup_s", "batch_per_process"]
    write_results("scaling", info, rows, cols, "Scaling on one machine")


if __name__ == "__main__":
    main()
