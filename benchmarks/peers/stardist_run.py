"""Train StarDist 2D from scratch on an exported split, tune its thresholds, predict.

Runs in the StarDist environment made by ``setup.sh`` (not SAC's). Settings follow StarDist's
own 2-D training example: 32 rays, grid (2, 2), per-image percentile normalisation (1 and 99.8;
RGB channels jointly for H&E), random flips, 90-degree rotations and intensity jitter, and its
threshold optimisation on the validation images. The training is cut at a wall-time budget
(``--minutes``, the time SAC's shipped model trained) by a Keras callback; the weights with the
best validation loss are kept. Writes::

    RUN/model/...                      StarDist's own model folder (outside the repository)
    RUN/predictions/<name>_labels.tif  instance labels of every validation image
    RUN/run.json                       settings, times, thresholds, errors

    python stardist_run.py --data ../peers/data/monuseg --run ../peers/runs/stardist-monuseg \
        --minutes 87
"""

from __future__ import annotations

import argparse
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


def augment(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """StarDist's example augmenter: flips, 90-degree rotations, intensity scale and shift."""
    k = np.random.randint(4)
    x, y = np.rot90(x, k, axes=(0, 1)), np.rot90(y, k, axes=(0, 1))
    for axis in (0, 1):
        if np.random.rand() < 0.5:
            x, y = np.flip(x, axis), np.flip(y, axis)
    x = x * np.random.uniform(0.6, 2) + np.random.uniform(-0.2, 0.2)
    return x, y


def predict_only(args: argparse.Namespace) -> int:
    """Time the trained model on every image of ``--predict`` (see
    :func:`peer_common.time_predictions`)."""
    from csbdeep.utils import normalize
    from stardist.models import StarDist2D

    t0 = time.perf_counter()
    model = StarDist2D(None, name="model", basedir=str(args.run))
    load_s = time.perf_counter() - t0
    axis = (0, 1) if args.grey else (0, 1, 2)

    def segment(path: Path) -> np.ndarray:
        x = normalize(read_image(path, args.grey), 1, 99.8, axis=axis)
        return model.predict_instances(x, n_tiles=model._guess_n_tiles(x))[0]

    return time_predictions("stardist", args.predict, args.out, load_s, segment)


def main() -> int:
    p = peer_parser(__doc__)
    p.add_argument("--grey", action="store_true", help="one input channel (fluorescence)")
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    args = p.parse_args()
    if args.predict is not None:
        return predict_only(args)
    if args.data is None or args.minutes is None:
        p.error("training needs --data and --minutes")
    record = {"tool": "stardist", "data": str(args.data), "minutes": args.minutes,
              "grey": args.grey, "patch": args.patch}
    return record_run(args, record, run)


def run(args: argparse.Namespace, record: dict) -> None:
    import stardist
    import tensorflow as tf
    from csbdeep.utils import normalize
    from stardist import fill_label_holes
    from stardist.models import Config2D, StarDist2D

    record["versions"] = {"stardist": stardist.__version__, "tensorflow": tf.__version__}
    axis_norm = (0, 1) if args.grey else (0, 1, 2)  # RGB: channels jointly
    _, x_trn, y_trn = read_split(args.data, "train", args.grey, args.limit)
    names, x_val, y_val = read_split(args.data, "val", args.grey, args.limit)
    norm = [normalize(x, 1, 99.8, axis=axis_norm) for x in (*x_trn, *x_val)]
    x_trn, x_val = norm[: len(x_trn)], norm[len(x_trn):]
    y_trn = [fill_label_holes(y) for y in y_trn]
    y_val_filled = [fill_label_holes(y) for y in y_val]
    patch = min(args.patch, *(min(x.shape[:2]) for x in x_trn))
    patch -= patch % 16
    conf = Config2D(n_rays=32, grid=(2, 2), n_channel_in=1 if args.grey else 3,
                    train_patch_size=(patch, patch), use_gpu=False,
                    train_tensorboard=False)  # logging only; tensorboard is not installed
    model = StarDist2D(conf, name="model", basedir=str(args.run))
    budget_s = args.minutes * 60

    class TimeLimit(tf.keras.callbacks.Callback):
        """Stops the training once the wall-time budget is spent (checked after each batch)."""

        def __init__(self) -> None:
            super().__init__()
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if time.perf_counter() - self.t0 >= budget_s:
                self.model.stop_training = True

    model.prepare_for_training()
    model.callbacks.append(TimeLimit())
    t0 = time.perf_counter()
    hist = model.train(x_trn, y_trn, validation_data=(x_val, y_val_filled), augmenter=augment,
                       epochs=10_000, steps_per_epoch=args.steps_per_epoch)
    record["train_seconds"] = round(time.perf_counter() - t0, 1)
    record["epochs"] = len(hist.history.get("loss", []))
    # StarDist reloads the weights with the best validation loss when training ends
    t0 = time.perf_counter()
    record["thresholds"] = {k: float(v) for k, v in
                            model.optimize_thresholds(x_val, y_val_filled).items()}
    record["tune_seconds"] = round(time.perf_counter() - t0, 1)
    out = args.run / "predictions"
    out.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    for name, x in zip(names, x_val, strict=True):
        write_labels(out / f"{name}_labels.tif",
                     model.predict_instances(x, n_tiles=model._guess_n_tiles(x))[0])
    record["predict_seconds"] = round(time.perf_counter() - t0, 1)
    record["predictions"] = str(out)


if __name__ == "__main__":
    raise SystemExit(main())
