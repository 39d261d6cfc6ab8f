"""Learning curves of training runs: validation AJI and pixel Dice against steps and hours.

Reads each run folder's ``log.jsonl`` (one record per epoch, written by ``sac train``) and
plots the full-pipeline validation metrics (for a run on several datasets, also each
dataset's own, dashed) against training steps and against the training wall time on this
machine (the standalone generator stage, if any, counted at the start;
validation time excluded). ``core-hours`` = wall hours x torch threads.

Run: ``.venv/bin/python benchmarks/learning_curve.py NAME=RUN_DIR [NAME=RUN_DIR ...] --tag
monuseg``. Writes ``results/learning_curve/learning_curve_<tag>.{png,json,md}``. Needs matplotlib
(``pip install 'segment-any-cell[bench]'``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench_common import RESULTS, machine_info, write_results

METRICS = (("val_aji", "AJI"), ("val_pixel_dice", "pixel Dice"))


def read_log(run: Path) -> tuple[list[dict[str, Any]], float]:
    """The epoch records of a run and the seconds of its generator stage."""
    path = run / "log.jsonl"
    if not path.is_file():
        raise SystemExit(f"{run}: no log.jsonl (is it a sac train run folder?)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    stage = sum(r["seconds"] for r in records if r.get("stage") == "generator")
    return [r for r in records if "epoch" in r], stage


def sources(epochs: list[dict[str, Any]]) -> list[str]:
    """The datasets a mixed run's log scores one by one (``val_aji@<source>``)."""
    return sorted({k.partition("@")[2] for r in epochs for k in r if k.startswith("val_aji@")})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    p.add_argument("--tag", required=True)
    p.add_argument("--threads", type=int, default=2, help="torch threads the runs used")
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharey="row")
    rows: list[dict[str, Any]] = []
    per_source: list[str] = []
    for item in args.runs:
        name, _, folder = item.partition("=")
        epochs, stage_s = read_log(Path(folder))
        steps = [r["step"] for r in epochs]
        hours, total = [], stage_s
        for r in epochs:
            total += r["seconds"]
            hours.append(total / 3600)
        own = sources(epochs)
        for k, (key, label) in enumerate(METRICS):
            for suffix, style in [("", "o-"), *((f"@{s}", "x--") for s in own)]:
                values = [r.get(key + suffix) for r in epochs]
                line = name + (f" ({suffix[1:]})" if suffix else "")
                axes[k, 0].plot(steps, values, style, label=line)
                axes[k, 1].plot(hours, values, style, label=line)
            axes[k, 0].set_ylabel(f"validation {label}")
        for r, h in zip(epochs, hours, strict=True):
            rows.append({"run": name, "epoch": r["epoch"], "step": r["step"],
                         "train_hours": round(h, 3),
                         "core_hours": round(h * args.threads, 3),
                         "lr": f"{r['lr']:.2e}",
                         **{k[4:]: r.get(k) for k in ("val_aji", "val_pixel_dice", "val_pq",
                                                       "val_f1_obj")},
                         **{f"aji@{s}": r.get(f"val_aji@{s}") for s in own}})
        per_source += [f"aji@{s}" for s in own if f"aji@{s}" not in per_source]
    axes[1, 0].set_xlabel("training steps (2 SAM crops each)")
    axes[1, 1].set_xlabel("training wall hours on this machine")
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.suptitle(f"Learning curves ({args.tag}): full-pipeline metrics on the validation split")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    png = RESULTS / f"learning_curve_{args.tag}.png"
    fig.savefig(png, dpi=100)
    info = machine_info()
    info.update(runs=args.runs, threads=args.threads, figure=png.name)
    _, md = write_results(f"learning_curve_{args.tag}", info, rows,
                          ["run", "epoch", "step", "train_hours", "core_hours", "lr", "aji",
                           "pixel_dice", "pq", "f1_obj", *per_source],
                          f"Learning curves ({args.tag})")
    print(md.read_text())


if __name__ == "__main__":
    main()
