"""Seconds per image of SAC, StarDist, cellpose and the classical baseline on the same
1000x1000 H&E images, in one run that alternates the tools.

Each round runs every tool once over all images, in its own process and environment (the
order rotates from round to round, so no tool always runs on a warmer or cooler machine);
each process loads its model once (reported apart) and times each image from reading the file
to writing the labels. Reported: median and mean seconds per image over all rounds, peak
memory of the process, and each tool's median as a ratio to SAC's. The peers' trained models
come from ``benchmarks/peers/`` runs (their MoNuSeg runs: H&E).

    python benchmarks/peers_speed.py --images ../peers/data/monuseg/val/images \
        --runs ../peers/runs --envs ../peers --rounds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from sac.cli.common import add_precision

from bench_common import machine_info, write_results

HERE = Path(__file__).resolve().parent


def commands(args: argparse.Namespace, out: Path) -> dict[str, list[str]]:
    """The predict command of each tool."""
    peers = HERE / "peers"
    cmd = {"sac": [sys.executable, str(peers / "sac_predict.py"), "--model", args.model,
                   "--precision", args.precision]}
    for tool in ("stardist", "cellpose"):
        cmd[tool] = [str(args.envs / tool / "bin" / "python"), str(peers / f"{tool}_run.py"),
                     "--run", str(args.runs / f"{tool}-monuseg")]
    if args.classical:
        cmd["classical"] = [sys.executable, str(peers / "sac_predict.py"), "--classical",
                            args.classical]
    return {t: [*c, "--predict", str(args.images), "--out", str(out / t)]
            for t, c in cmd.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=Path, required=True, help="folder of .tif images")
    p.add_argument("--runs", type=Path, required=True, help="the peers' run folders")
    p.add_argument("--envs", type=Path, required=True, help="the peers' environments")
    p.add_argument("--model", default="sac-lite-monuseg")
    p.add_argument("--classical", default='{"sigma": 1.0, "min_distance": 8}',
                   help="classical baseline parameters (accuracy.py's tuned ones)")
    p.add_argument("--rounds", type=int, default=2)
    add_precision(p)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(args, Path(tmp))
        tools = list(cmds)
        for r in range(args.rounds):
            order = tools[r % len(tools):] + tools[: r % len(tools)]
            for tool in order:
                proc = subprocess.run(cmds[tool], capture_output=True, text=True, check=False)
                res = results.setdefault(tool, {"seconds": [], "load_s": [], "peak_mb": 0.0})
                lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
                if proc.returncode != 0 or not lines:
                    res["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
                    print(f"{tool}: failed ({res['error']})", flush=True)
                    continue
                got = json.loads(lines[-1])
                res["seconds"] += list(got["seconds"].values())
                res["load_s"].append(got["load_s"])
                res["peak_mb"] = max(res["peak_mb"], got["peak_mb"])
                print(f"round {r + 1} {tool}: median "
                      f"{statistics.median(got['seconds'].values()):.2f} s/image", flush=True)
    sac_median = statistics.median(results["sac"]["seconds"]) if results.get("sac", {}).get(
        "seconds") else None
    rows = []
    for tool, res in results.items():
        if not res["seconds"]:
            rows.append({"tool": tool, "error": res.get("error")})
            continue
        med = statistics.median(res["seconds"])
        rows.append({"tool": tool, "images": len(res["seconds"]),
                     "median_s": round(med, 2),
                     "mean_s": round(statistics.fmean(res["seconds"]), 2),
                     "load_s": round(statistics.median(res["load_s"]), 1),
                     "peak_mb": round(res["peak_mb"]),
                     "ratio_to_sac": None if not sac_median else round(med / sac_median, 2),
                     "error": res.get("error")})
    meta = machine_info() | {"images_folder": str(args.images), "rounds": args.rounds,
                             "sac_model": args.model, "precision": args.precision,
                             "note": "seconds per image: reading the file to writing labels; "
                                     "each process loads its model once (load_s)"}
    write_results(f"peers_speed{args.tag}", meta, rows,
                  ["tool", "images", "median_s", "mean_s", "load_s", "peak_mb",
                   "ratio_to_sac", "error"], "Seconds per 1000x1000 H&E image, alternating")


if __name__ == "__main__":
    main()
