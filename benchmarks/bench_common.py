"""Shared helpers for benchmark scripts: machine description, timing, OpenVINO runs and result
files (JSON + markdown)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sac.cli.common import add_precision
from sac.core.fileio import atomic_path


def _script() -> str:
    """The running benchmark script's name (its results folder)."""
    import sys

    main = getattr(sys.modules.get("__main__"), "__file__", None)
    return Path(main).stem if main else "interactive"


#: this script's results folder: one per script, ``results/<script>/``; superseded results
#: live in ``results/archive/``
RESULTS = Path(__file__).parent / "results" / _script()
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: dataset name -> (reader format, default folder); the built-in split has the same name
DATASETS = {"monuseg": ("monuseg", DATA / "monuseg" / "train"),
            "dsb2018": ("dsb2018", DATA / "dsb2018" / "stage1_train")}


def validation_parser(doc: str) -> argparse.ArgumentParser:
    """The options every validation-set benchmark takes: --dataset, --data, --limit, --precision,
    --tag (each script adds its own --model and the rest)."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    p.add_argument("--data", type=Path, default=None, help="default: ../shared/data/...")
    p.add_argument("--limit", type=int, default=None, help="first N validation images")
    add_precision(p)
    p.add_argument("--tag", default="")
    return p


def bf16_of(args: argparse.Namespace) -> bool:
    """Whether ``--precision`` means bf16 on this machine's CPU (see sac.core.device)."""
    from sac.core.device import resolve_device, use_bf16

    return use_bf16(args.precision, resolve_device("cpu"))


def validation_set(name: str, data: Path | None = None, limit: int | None = None
                   ) -> tuple[Any, list[str]]:
    """A dataset (``data`` or its default folder) and the first ``limit`` names of its
    built-in validation split."""
    from sac.data.open import open_dataset
    from sac.data.splits import load_builtin_split

    fmt, default = DATASETS[name]
    return open_dataset(data or default, fmt), load_builtin_split(name).val[:limit]


def git_commit() -> str:
    """Current commit, with ``-dirty`` when tracked files have uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, object]:
    """What the numbers were measured on."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1min_now": round(os.getloadavg()[0], 2),
    }


#: environment variables that limit torch's and oneDNN's kernels (to time an AVX2-only CPU)
ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


def isa_env() -> dict[str, str]:
    """The kernel-limiting environment of this run (recorded beside its timings)."""
    return {k: os.environ[k] for k in ISA_ENV if k in os.environ}


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """``fn``'s last output and its milliseconds per call over ``repeats`` calls after one
    warm-up call."""
    out = fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return out, (time.perf_counter() - t0) / repeats * 1000


def openvino_runs(core: Any, model: Any, threads: int, hints: dict[str, str],
                  feed: Any) -> dict[str, Callable[[], Any]]:
    """One call per ``label: precision hint`` of the OpenVINO ``model`` compiled on the CPU,
    each returning its first output for ``feed``; a hint that fails to compile (bf16 where
    oneDNN is limited to AVX2) is left out and said."""
    runs: dict[str, Callable[[], Any]] = {}
    for label, hint in hints.items():
        try:
            compiled = core.compile_model(model, "CPU", {
                "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint})
        except RuntimeError as exc:
            print(f"{label} left out: {str(exc).splitlines()[-1]}")
            continue
        runs[label] = lambda c=compiled: c(feed)[0]
    return runs


def seed_summary(rows: list[dict[str, Any]], keys: list[str] | tuple[str, ...]
                 ) -> list[dict[str, Any]]:
    """One row per variant (in order of appearance): its number of runs and, for each of
    ``keys``, the mean and half the range over its rows, as ``"0.1234 +- 0.0012"``."""
    out = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        own = [r for r in rows if r["variant"] == name]
        s: dict[str, Any] = {"variant": name, "seed": "mean +- spread", "runs": len(own)}
        for k in keys:
            vals = [float(r[k]) for r in own]
            s[k] = f"{statistics.fmean(vals):.4f} +- {(max(vals) - min(vals)) / 2:.4f}"
        out.append(s)
    return out


def write_results(name: str, info: dict[str, object], rows: list[dict[str, object]],
                  columns: list[str], title: str) -> tuple[Path, Path]:
    """Write ``results/<script>/<name>.json`` and ``.md`` (a table with a machine header)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    js = RESULTS / f"{name}.json"
    md = RESULTS / f"{name}.md"
    _write_atomic(js, json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
    lines = [f"# {title}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    _write_atomic(md, "\n".join(lines) + "\n")
    return js, md


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` whole (temporary file, then rename): a run killed mid-write leaves the
    previous results, which may hold rows of earlier sessions, intact."""
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(text)
