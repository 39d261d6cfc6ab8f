"""Train cellpose 3.1 from scratch on an exported split, tune its thresholds, predict.

Runs in the cellpose environment made by ``setup.sh`` (not SAC's). Settings are cellpose's
training CLI defaults (SGD, learning rate 0.2, weight decay 1e-5, batch 8, 224-px patches,
rescaling) with the nuclei model's configuration: grey input (``channels=[0, 0]``) and a mean
diameter of 17 px that every image is rescaled to from its measured nucleus size. The number of
epochs is set so that training fills the wall-time budget (``--minutes``, the time SAC's
shipped model trained): after a 1-epoch warm-up (numba compiles cellpose's flow code on first
use), two timing runs (2 and 12 epochs, fewer where an epoch is long: see
:func:`calibration_epochs`) measure the fixed cost and the cost per epoch. Then, like
StarDist's and SAC's threshold tuning, the flow and cell probability thresholds are chosen on
the validation images (mean average precision at IoU 0.5, cellpose's own metric). Writes::

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
import time
from pathlib import Path

import numpy as np
from peer_common import (
    peer_parser,
    read_image,
    read_split,
    record_run,
    time_predictions,
    write_labels,
)

DIAM_MEAN = 17.0  # the nuclei model's
CELLPROB = (-1.0, 0.0, 1.0)
FLOW = (0.3, 0.4, 0.6)
CALIBRATE = (2, 12)  # epochs of the two timing runs, at most
CALIBRATION_SHARE = 0.1  # of the budget that the longer timing run may take, about


def calibration_epochs(warmup_s: float, budget_s: float) -> tuple[int, int]:
    """Epochs ``(a, b)`` of the two timing runs, from the 1-epoch warm-up's time.

    At most :data:`CALIBRATE`; fewer when the warm-up says an epoch is long, so that the
    longer run takes about :data:`CALIBRATION_SHARE` of the budget (on DSB 2018's 570 images
    an epoch takes 4.4-7 min on 2 cores, and 2 + 12 epochs of timing cost 100 min before a
    102-min training). Never below (1, 2): two points are needed.
    """
    b = int(min(CALIBRATE[1], max(2, CALIBRATION_SHARE * budget_s // max(warmup_s, 1e-3))))
    a = max(1, min(CALIBRATE[0], b // 6))
    return a, b


def predict_only(args: argparse.Namespace) -> int:
    """Time the trained model, with its tuned thresholds, on every image of ``--predict`` (see
    :func:`peer_common.time_predictions`)."""
    from cellpose import models

    th = json.loads((args.run / "run.json").read_text())["thresholds"]
    t0 = time.perf_counter()
    model = models.CellposeModel(gpu=False,
                                 pretrained_model=str(args.run / "model" / "cellpose_model"))
    load_s = time.perf_counter() - t0

    def segment(path: Path) -> np.ndarray:
        return model.eval(read_image(path, grey=True), channels=[0, 0],
                          diameter=float(model.diam_labels),
                          cellprob_threshold=th["cellprob_threshold"],
                          flow_threshold=th["flow_threshold"])[0]

    return time_predictions("cellpose", args.predict, args.out, load_s, segment)


def main() -> int:
    p = peer_parser(__doc__)
    p.add_argument("--max-epochs", type=int, default=2000)
    args = p.parse_args()
    if args.predict is not None:
        return predict_only(args)
    if args.data is None or args.minutes is None:
        p.error("training needs --data and --minutes")
    record = {"tool": "cellpose", "data": str(args.data), "minutes": args.minutes,
              "diam_mean": DIAM_MEAN}
    return record_run(args, record, run)


def run(args: argparse.Namespace, record: dict) -> None:
    import cellpose
    import torch
    from cellpose import metrics, models, train

    record["versions"] = {"cellpose": cellpose.version, "torch": torch.__version__}
    _, x_trn, y_trn = read_split(args.data, "train", True, args.limit)
    names, x_val, y_val = read_split(args.data, "val", True, args.limit)
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

    # a first short run pays the one-off costs (numba compiling cellpose's flow code, caches);
    # two more runs of A and B epochs then give the cost per epoch (including cellpose's test
    # loss every 10 epochs) and the fixed cost of a training call
    _, tw = fit(1, "warmup")
    budget = args.minutes * 60
    a, b = calibration_epochs(tw, budget)
    _, ta = fit(a, "calibrate_a")
    _, tb = fit(b, "calibrate_b")
    per_epoch = max((tb - ta) / (b - a), 1e-3)
    fixed = max(ta - a * per_epoch, 0.0)
    n_epochs = int(min(args.max_epochs, max(1, (budget - fixed) // per_epoch)))
    record.update(calibration={"warmup_s": round(tw, 1), "epochs": [a, b],
                               "seconds": [round(ta, 1), round(tb, 1)],
                               "per_epoch_s": round(per_epoch, 3), "fixed_s": round(fixed, 1)},
                  n_epochs=n_epochs, settings={k: v for k, v in settings.items()
                                               if k != "save_path"})
    path, seconds = fit(n_epochs, "model")
    record["train_seconds"] = round(seconds, 1)
    record["budget_used"] = round(seconds / budget, 3)  # > 1: the calibration underestimated
    model_dir.mkdir(exist_ok=True)
    final = model_dir / "cellpose_model"
    Path(path).replace(final)
    for leftover in ("warmup", "calibrate_a", "calibrate_b"):
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
        write_labels(out / f"{name}_labels.tif", labels)
    record["predict_seconds"] = round(time.perf_counter() - t0, 1)
    record["predictions"] = str(out)


if __name__ == "__main__":
    raise SystemExit(main())
