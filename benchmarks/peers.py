"""SAC against StarDist and cellpose trained from scratch on the same images: one table per
dataset, scored by SAC's evaluation on the same validation images.

The peers are trained and run by the scripts in ``benchmarks/peers/`` (in their own
environments, see ``benchmarks/peers/README.md``); this script reads their predictions and
run records, segments the same images with the shipped SAC model and the classical baseline
(tuned on training images, as in ``accuracy.py``), and scores everything with
``sac.metrics.report.evaluate_dataset``. A peer whose run failed keeps its row, with the error.

    python benchmarks/peers.py --dataset monuseg --runs ../peers/runs
    python benchmarks/peers.py --dataset monuseg --runs ../peers/runs --only cellpose

With ``--only``, the other methods' rows of the results file already there are kept, so each
peer's row can be scored and committed as soon as its run ends.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from accuracy import tune_classical

from sac.core.images import to_rgb_float
from sac.data.splits import load_builtin_split
from sac.metrics import aggregate
from sac.metrics.report import evaluate_dataset
from sac.pipeline.classical import classical_instances
from sac.pipeline.segmenter import load_segmenter

from bench_common import (
    RESULTS,
    machine_info,
    validation_parser,
    validation_set,
    write_results,
)

SHIPPED = {"monuseg": "sac-lite-monuseg", "dsb2018": "sac-lite-dsb2018"}
PEERS = ("stardist", "cellpose")
METHODS = ("sac", *PEERS, "classical")
METRICS = ("pixel_dice", "aji", "pq", "f1_obj", "dsb_score")


def rows_of(method: str, report: Any, types: dict[str, str], train_s: float | None,
            extra: dict[str, Any]) -> list[dict[str, Any]]:
    """One row over all images and, where images have types (DSB), one per type."""
    groups: dict[str, list[dict[str, Any]]] = {"all": report.images}
    for r in report.images:
        if types.get(r["name"], "he") != "he":
            groups.setdefault(types[r["name"]], []).append(r)
    out = []
    for group, rows in groups.items():
        agg = aggregate(rows)
        out.append({"method": method, "image_type": group, "images": len(rows),
                    **{m: round(float(agg[m]), 4) for m in METRICS},
                    "train_cpu_min": None if train_s is None else round(train_s / 60, 1),
                    **extra})
    return out


def peer_run(runs: Path, tool: str, dataset: str) -> tuple[dict[str, Any], Path | None]:
    """A peer's run record and its predictions folder (None when the run did not finish)."""
    folder = runs / f"{tool}-{dataset}"
    record_file = folder / "run.json"
    if not record_file.is_file():
        return {"error": f"no run record at {record_file}: the run was not made"}, None
    record = json.loads(record_file.read_text())
    pred = folder / "predictions"
    return record, (pred if "error" not in record and pred.is_dir() else None)


def merged(previous: dict[str, Any] | None, rows: list[dict[str, Any]],
           provenance: dict[str, dict[str, Any]], names: list[str]
           ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """This run's rows and, for the methods it did not score, those of the results file already
    there (same images only), so that each peer's row lands as soon as its run is scored."""
    if previous is None or set(provenance) >= set(METHODS):  # every row is new
        return rows, provenance
    if previous["machine"].get("image_names") != names:
        raise SystemExit("the existing results file was scored on other images; give another "
                         "--tag or score every method again (without --only)")
    kept = [r for r in previous["rows"] if r["method"] not in provenance]
    prov = {m: v for m, v in previous["machine"].get("methods", {}).items()
            if m not in provenance} | provenance
    order = {m: k for k, m in enumerate(METHODS)}
    return sorted(kept + rows, key=lambda r: order.get(r["method"], len(order))), prov


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--runs", type=Path, default=None,
                   help="the peers' run folders (needed to score a peer)")
    p.add_argument("--only", nargs="+", choices=METHODS, default=list(METHODS),
                   help="score only these methods and keep the other rows of the existing "
                        "results file (each row records its own commit and date)")
    p.add_argument("--classical-images", type=int, default=12)
    p.add_argument("--train-conditions", default="",
                   help="how the scored peers' trainings shared the machine (recorded with "
                        "their rows)")
    args = p.parse_args()
    peers = [t for t in PEERS if t in args.only]
    if peers and args.runs is None:
        p.error(f"scoring {', '.join(peers)} needs --runs")
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    # image types (DSB): the built-in split's record, as accuracy.py reads them
    types = load_builtin_split(args.dataset).meta.get("types", {})
    rows: list[dict[str, Any]] = []
    provenance: dict[str, dict[str, Any]] = {}
    stamp = machine_info()
    here = {"commit": stamp["commit"], "date": stamp["date"]}

    model = SHIPPED[args.dataset]
    if "sac" in args.only:
        seg = load_segmenter(model, precision=args.precision)
        report = evaluate_dataset(dataset, predict=lambda im, n: seg.segment(im, n),
                                  names=names, progress=False)
        tr = seg.config.training
        train_s, note = tr.get("train_seconds"), model
        # a generator trained alone, before the joint stage (--generator-steps) or afterwards
        # (swapped in), counts too; validation during training does not, as before
        alone = (tr.get("generator_stage_seconds") or 0.0) + (
            tr.get("generator_replaced") or {}).get("train_seconds", 0.0)
        if train_s is not None and alone:
            note += (f" (joint {train_s / 60:.1f} min + generator alone "
                     f"{alone / 60:.1f} min)")
            train_s += alone
        rows += rows_of("sac", report, types, train_s, {"note": note})
        provenance["sac"] = here | {"model": model, "precision": args.precision}

    for tool in peers:
        record, pred = peer_run(args.runs, tool, args.dataset)
        provenance[tool] = here | {"train_conditions": args.train_conditions} | {
            k: v for k, v in record.items() if k not in ("traceback", "tuning")}
        if pred is None:
            rows.append({"method": tool, "image_type": "all", "note": record["error"]})
            continue
        report = evaluate_dataset(dataset, predictions_dir=pred, names=names, progress=False)
        rows += rows_of(tool, report, types, record.get("train_seconds"),
                        {"note": f"{tool} {record.get('versions', {}).get(tool, '')}".strip()})

    if "classical" in args.only:
        t0 = time.perf_counter()
        classical = tune_classical(dataset, load_builtin_split(args.dataset).train,
                                   args.classical_images)
        tune_s = time.perf_counter() - t0
        params = {k: classical[k] for k in ("sigma", "min_distance")}
        report = evaluate_dataset(
            dataset, predict=lambda im, n: classical_instances(to_rgb_float(im), **params),
            names=names, progress=False)
        rows += rows_of("classical", report, types, tune_s,
                        {"note": f"tuned on {args.classical_images} training images: "
                                 f"{params}"})
        provenance["classical"] = here

    name = f"peers_{args.dataset}{args.tag}"
    old_file = RESULTS / f"{name}.json"
    previous = json.loads(old_file.read_text()) if old_file.is_file() else None
    rows, provenance = merged(previous, rows, provenance, list(names))
    meta = stamp | {"dataset": args.dataset, "split": "built-in val", "images": len(names),
                    "sac_model": model, "methods": provenance, "image_names": list(names),
                    "note": "each method's commit, date, settings and training conditions are "
                            "under methods; train_cpu_min: wall time of training on the 2 "
                            "cores (SAC: from its model config; classical: its tuning); "
                            "speed: peers_speed.md, measured apart on a quiet machine"}
    cols = ["method", "image_type", "images", *METRICS, "train_cpu_min", "note"]
    write_results(name, meta, rows, cols,
                  f"SAC and its peers on the {args.dataset} validation split")
    for r in rows:
        print({k: r.get(k) for k in ("method", "image_type", "aji", "dsb_score")})


if __name__ == "__main__":
    main()
