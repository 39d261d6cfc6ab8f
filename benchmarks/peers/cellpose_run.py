"""Train cellpose 3.1 from scratch on an exported split, tune its thresholds, predict.

Runs in the cellpose environment made by ``setup.sh`` (not SAC's). Settings are cellpose's
training CLI defaults (SGD, learning rate 0.2, weight decay 1e-5, batch 8, 224-px patches,
rescaling) with the nuclei model's configuration: grey input (``channels=[0, 0]``) and a mean
diameter of 17 px that every image is rescaled to from its measured nucleus size. The number of
epochs is set so that training fills the wall-time budget (``--minutes``, the time SAC's
shipped model trained): two short calibration runs (1 and 3 epochs) measure the fixed cost and
the cost per epoch. Then, like StarDist's and SAC's threshold tuning, the flow and cell
probability thresholds are chosen on the validation images (mean average precision at IoU 0.5,
cellpose's own metric). Writes::

    RUN/model/...                      cellpose's model file (outside the repository)
    RUN/predictions/<name>_labels.tif  instance labels of every validation image
    RUN/run.json                       settings, times, thresholds, errors

    python cellpose_run.py --data ../peers/data/monuseg --run ../peers/runs/cellpose-monuseg \
        --minutes 87
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import tifffile

DIAM_MEAN = 17.0  # the nuclei model's
CELLPROB = (-1.0, 0.0, 1.0)
FLOW = (0.3, 0.4, 0.6)


def read_split(root: Path, part: str) -> tuple[list[str], list, list]:
    """Names, grey images and labels of ``root/part`` (as ``export.py`` wrote them)."""
    names = sorted(p.stem for p in (root / part / "images").glob("*.tif"))
    images = []
    for n in names:
        im = tifffile.imread(root / part / "images" / f"{n}.tif").astype(np.float32)
        images.append(im.mean(axis=2) if im.ndim == 3 else im)
    labels = [tifffile.imread(root / part / "labels" / f"{n}.tif").astype(np.int32)
              for n in names]
    return names, images, labels


def predict_only(args: argparse.Namespace) -> int:
    """Time the trained model (with its tuned thresholds) on every image of ``--predict``:
    seconds per image from reading the file to writing the labels, and the peak memory."""
    import resource

    from cellpose import models

    record = json.loads((args.run / "run.json").read_text())
    th = record["thresholds"]
    t0 = time.perf_counter()
    model = models.CellposeModel(gpu=False,
                                 pretrained_model=str(args.run / "model" / "cellpose_model"))
    load_s = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    times = {}
    for path in sorted(args.predict.glob("*.tif")):
        t0 = time.perf_counter()
        x = tifffile.imread(path).astype(np.float32)
        x = x.mean(axis=2) if x.ndim == 3 else x
        labels, _, _ = model.eval(x, channels=[0, 0], diameter=float(model.diam_labels),
                                  cellprob_threshold=th["cellprob_threshold"],
                                  flow_threshold=th["flow_threshold"])
        tifffile.imwrite(args.out / f"{path.stem}_labels.tif", np.asarray(labels, np.uint32),
                         compression="zlib")
        times[path.stem] = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tool": "cellpose", "load_s": load_s, "seconds": times,
                      "peak_mb": peak_mb}))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, help="exported split (export.py)")
    p.add_argument("--run", type=Path, required=True, help="run folder (created)")
    p.add_argument("--minutes", type=float, help="training wall-time budget")
    p.add_argument("--predict", type=Path, default=None,
                   help="only predict these images (a folder of .tif) with the trained model")
    p.add_argument("--out", type=Path, default=None, help="with --predict: labels folder")
    p.add_argument("--limit", type=int, default=None, help="first N images (smoke tests)")
    p.add_argument("--max-epochs", type=int, default=2000)
    args = p.parse_args()
    if args.predict is not None:
        return predict_only(args)
    if args.data is None or args.minutes is None:
        p.error("training needs --data and --minutes")
    args.run.mkdir(parents=True, exist_ok=True)
    record: dict = {"tool": "cellpose", "data": str(args.data), "minutes": args.minutes,
                    "diam_mean": DIAM_MEAN, "python": platform.python_version(),
                    "threads": os.cpu_count(), "argv": sys.argv[1:]}
    try:
        run(args, record)
    except Exception as exc:  # the error goes into the results instead of dropping the row
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
        print(record["traceback"], file=sys.stderr)
    (args.run / "run.json").write_text(json.dumps(record, indent=1) + "\n")
    return 1 if "error" in record else 0


def run(args: argparse.Namespace, record: dict) -> None:
    import cellpose
    import torch
    from cellpose import metrics, models, train

    record["versions"] = {"cellpose": cellpose.version, "torch": torch.__version__}
    _, x_trn, y_trn = read_split(args.data, "train")
    names, x_val, y_val = read_split(args.data, "val")
    if args.limit:
        x_trn, y_trn = x_trn[: args.limit], y_trn[: args.limit]
        names, x_val, y_val = names[: args.limit], x_val[: args.limit], y_val[: args.limit]
    model_dir = args.run / "model"
    settings = {"channels": [0, 0], "SGD": True, "learning_rate": 0.2, "weight_decay": 1e-5,
                "batch_size": 8, "min_train_masks": 1, "save_path": str(args.run)}

    def fit(n_epochs: int, name: str) -> tuple[str, float]:
        torch.manual_seed(0)
        np.random.seed(0)
        model = models.CellposeModel(gpu=False, pretrained_model=False, diam_mean=DIAM_MEAN)
        t0 = time.perf_counter()
        path, _, _ = train.train_seg(model.net, train_data=x_trn, train_labels=y_trn,
                                     test_data=x_val, test_labels=y_val, n_epochs=n_epochs,
                                     model_name=name, **settings)
        return str(path), time.perf_counter() - t0

    _, t1 = fit(1, "calibrate1")
    _, t3 = fit(3, "calibrate3")
    per_epoch = max((t3 - t1) / 2, 1e-3)
    fixed = max(t1 - per_epoch, 0.0)
    budget = args.minutes * 60
    n_epochs = int(min(args.max_epochs, max(1, (budget - fixed) // per_epoch)))
    record.update(calibration={"one_epoch_s": round(t1, 1), "three_epochs_s": round(t3, 1),
                               "per_epoch_s": round(per_epoch, 2), "fixed_s": round(fixed, 1)},
                  n_epochs=n_epochs, settings={k: v for k, v in settings.items()
                                               if k != "save_path"})
    path, seconds = fit(n_epochs, "model")
    record["train_seconds"] = round(seconds, 1)
    model_dir.mkdir(exist_ok=True)
    final = model_dir / "cellpose_model"
    Path(path).replace(final)
    for leftover in ("calibrate1", "calibrate3"):
        (args.run / "models" / leftover).unlink(missing_ok=True)
    model = models.CellposeModel(gpu=False, pretrained_model=str(final))
    diameter = float(model.diam_labels)
    record["diameter"] = round(diameter, 2)

    def predict(images: list, cellprob: float, flow: float) -> list:
        masks, _, _ = model.eval(images, channels=[0, 0], diameter=diameter,
                                 cellprob_threshold=cellprob, flow_threshold=flow)
        return masks

    t0 = time.perf_counter()
    table = []
    for cellprob, flow in itertools.product(CELLPROB, FLOW):
        ap = metrics.average_precision(y_val, predict(x_val, cellprob, flow), [0.5])[0]
        table.append({"cellprob_threshold": cellprob, "flow_threshold": flow,
                      "ap50": float(np.mean(ap))})
    # cellpose's defaults are kept unless another setting is strictly better (as SAC's tuning)
    best = next(r for r in table if (r["cellprob_threshold"], r["flow_threshold"]) == (0.0, 0.4))
    for r in table:
        if r["ap50"] > best["ap50"]:
            best = r
    record.update(tuning=table, thresholds=best,
                  tune_seconds=round(time.perf_counter() - t0, 1))
    out = args.run / "predictions"
    out.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    masks = predict(x_val, best["cellprob_threshold"], best["flow_threshold"])
    for name, labels in zip(names, masks, strict=True):
        tifffile.imwrite(out / f"{name}_labels.tif", np.asarray(labels, np.uint32),
                         compression="zlib")
    record["predict_seconds"] = round(time.perf_counter() - t0, 1)
    record["predictions"] = str(out)


if __name__ == "__main__":
    raise SystemExit(main())
