"""What the peer scripts share: reading an exported split, the run record, and the timed
``--predict`` contract. Plain numpy and tifffile, so it imports in every environment (SAC's,
StarDist's, cellpose's)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tifffile


def peer_parser(doc: str) -> argparse.ArgumentParser:
    """Options every peer script takes: train (``--data``, ``--minutes``) or ``--predict``."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--data", type=Path, help="exported split (export.py)")
    p.add_argument("--run", type=Path, required=True, help="run folder (created)")
    p.add_argument("--minutes", type=float, help="training wall-time budget")
    p.add_argument("--limit", type=int, default=None, help="first N images (smoke tests)")
    p.add_argument("--predict", type=Path, default=None,
                   help="only predict these images (a folder of .tif) with the trained model")
    p.add_argument("--out", type=Path, default=None, help="with --predict: labels folder")
    return p


def read_image(path: Path, grey: bool) -> np.ndarray:
    """An exported image; with ``grey`` one float32 channel, the mean of RGB (DSB's
    fluorescence images are grey stored as RGB)."""
    image = tifffile.imread(path)
    if not grey:
        return image
    image = image.astype(np.float32)
    return image.mean(axis=2) if image.ndim == 3 else image


def read_split(root: Path, part: str, grey: bool, limit: int | None = None
               ) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Names, images and labels of ``root/part`` (as ``export.py`` wrote them), the first
    ``limit`` by name."""
    folder = root / part / "images"
    names = sorted(p.stem for p in folder.glob("*.tif"))[:limit]
    if not names:
        raise FileNotFoundError(f"{folder}: no exported .tif images; run export.py first")
    images = [read_image(root / part / "images" / f"{n}.tif", grey) for n in names]
    labels = [tifffile.imread(root / part / "labels" / f"{n}.tif").astype(np.int32)
              for n in names]
    return names, images, labels


def write_labels(path: Path, labels: np.ndarray) -> None:
    tifffile.imwrite(path, np.asarray(labels, np.uint32), compression="zlib")


def record_run(args: argparse.Namespace, record: dict[str, Any],
               run: Callable[[argparse.Namespace, dict[str, Any]], None]) -> int:
    """Train with ``run``, filling ``record``, and write it to ``RUN/run.json``; an error goes
    into the record (the results keep the row) and the exit code is 1."""
    args.run.mkdir(parents=True, exist_ok=True)
    record.update(python=platform.python_version(), threads=os.cpu_count(), argv=sys.argv[1:])
    try:
        run(args, record)
    except Exception as exc:  # the error goes into the results instead of dropping the row
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
        print(record["traceback"], file=sys.stderr)
    (args.run / "run.json").write_text(json.dumps(record, indent=1) + "\n")
    return 1 if "error" in record else 0


def time_predictions(tool: str, images: Path, out: Path, load_s: float,
                     segment: Callable[[Path], np.ndarray]) -> int:
    """Segment every ``.tif`` of ``images`` into ``out/<stem>_labels.tif``, timing each from
    reading the file to writing the labels; print one JSON line with the seconds per image,
    the model's load time and the process's peak memory."""
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    for path in sorted(images.glob("*.tif")):
        t0 = time.perf_counter()
        write_labels(out / f"{path.stem}_labels.tif", segment(path))
        times[path.stem] = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tool": tool, "load_s": load_s, "seconds": times, "peak_mb": peak_mb}))
    return 0
