"""What ``sac refine`` does to other tools' nuclei: AJI, PQ and Dice before and after.

For each validation image the input labels come from the classical baseline (Otsu plus
watershed, its ``sigma`` and ``min_distance`` tuned on training images as in
``benchmarks/accuracy.py``) and, with ``--labels-dir DIR`` (repeatable, ``NAME=DIR``), from
another tool's predictions saved as ``DIR/<name>_labels.tif`` or ``DIR/<name>.tif`` (e.g.
StarDist's or cellpose's, from ``benchmarks/peers/``), and with ``--sac-input MODEL``
(repeatable) from another SAC model's segmentation (a strong tool's labels, when the peers'
predictions are not at hand). Each is refined with every ``--variant``
(``NAME:prompt=both,neg=0,min_iou=0.3,repair=1``; omitted keys keep
:class:`sac.pipeline.refine.RefineSettings`' defaults) and scored against the truth.

Run: ``.venv/bin/python benchmarks/refine.py --dataset monuseg --model sac-lite-monuseg``.
Writes ``results/refine/refine_<dataset>[_<tag>].{json,md}``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from accuracy import tune_classical

from sac.core.images import to_rgb_float
from sac.data.images import read_labels
from sac.data.splits import load_builtin_split
from sac.metrics import aggregate, evaluate_pair
from sac.pipeline.classical import classical_instances
from sac.pipeline.refine import RefineSettings, refine_labels
from sac.pipeline.segmenter import load_segmenter

from bench_common import machine_info, validation_parser, validation_set, write_results

DEFAULT_VARIANTS = ("repair (default):", "keep-objects:repair=0",
                    "keep-objects-point+box:repair=0,prompt=both")
KEYS = ("aji", "pq", "pixel_dice", "f1_obj")


def parse_variant(text: str) -> tuple[str, RefineSettings]:
    """``NAME:key=value,...`` -> the name and its settings."""
    name, _, rest = text.partition(":")
    fields: dict[str, Any] = {}
    for pair in filter(None, rest.split(",")):
        key, _, value = pair.partition("=")
        if key == "prompt":
            fields["prompt"] = value
        elif key == "neg":
            fields["neighbour_negatives"] = int(value)
        elif key == "min_iou":
            fields["min_iou"] = float(value)
        elif key == "repair":
            fields["repair"] = value not in ("0", "false", "no")
        else:
            raise SystemExit(f"--variant {text}: unknown key {key!r} "
                             "(prompt, neg, min_iou, repair)")
    return name, RefineSettings(**fields)


def tool_labels(folder: Path, name: str) -> np.ndarray:
    """A tool's prediction for image ``name`` in ``folder``."""
    for candidate in (folder / f"{name}_labels.tif", folder / f"{name}.tif"):
        if candidate.is_file():
            return read_labels(candidate)
    raise SystemExit(f"{folder}: no prediction for {name} (<name>_labels.tif or <name>.tif)")


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", default=None, help="default: the dataset's shipped specialist")
    p.add_argument("--variant", action="append", default=None,
                   help=f"refine settings to compare (default: {', '.join(DEFAULT_VARIANTS)})")
    p.add_argument("--labels-dir", action="append", default=[], metavar="NAME=DIR",
                   help="another tool's predictions to refine")
    p.add_argument("--sac-input", action="append", default=[], metavar="MODEL",
                   help="refine this SAC model's own segmentation too")
    p.add_argument("--classical-images", type=int, default=8,
                   help="training images the classical baseline is tuned on")
    args = p.parse_args()
    info: dict[str, Any] = machine_info()
    model = args.model or f"sac-lite-{args.dataset}"
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    seg = load_segmenter(model, precision=args.precision)
    variants = [parse_variant(v) for v in args.variant or DEFAULT_VARIANTS]
    params = tune_classical(dataset, load_builtin_split(args.dataset).train,
                            args.classical_images)
    params = {k: params[k] for k in ("sigma", "min_distance")}
    sources: dict[str, Any] = {"classical": lambda im, n: classical_instances(
        to_rgb_float(im), **params)}
    for other in args.sac_input:
        tool_seg = load_segmenter(other, precision=args.precision)
        sources[other] = lambda im, n, s=tool_seg: s.segment(im).labels
    for spec in args.labels_dir:
        tool, _, folder = spec.partition("=")
        sources[tool] = lambda im, n, f=Path(folder): tool_labels(f, n)
    scores: dict[tuple[str, str], list[dict[str, float]]] = {}
    seconds: dict[tuple[str, str], float] = {}
    changed: dict[tuple[str, str], int] = {}
    for name in names:
        sample = dataset[name]
        for tool, predict in sources.items():
            given = predict(sample.image, name)
            scores.setdefault((tool, "as given"), []).append(evaluate_pair(sample.labels, given))
            for vname, settings in variants:
                t0 = time.perf_counter()
                out = refine_labels(seg, sample.image, given, settings)
                key = (tool, vname)
                seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0
                changed[key] = changed.get(key, 0) + out.changed
                scores.setdefault(key, []).append(evaluate_pair(sample.labels, out.labels))
        print(f"{name} done", flush=True)
    rows = []
    for (tool, vname), per_image in scores.items():
        agg = aggregate(per_image)
        row: dict[str, Any] = {"input": tool, "refined": vname, "images": len(per_image)}
        row.update({k: round(agg[k], 4) for k in KEYS})
        if (tool, vname) in seconds:
            row["s_per_image"] = round(seconds[(tool, vname)] / len(per_image), 2)
            row["nuclei_changed"] = changed[(tool, vname)]
        rows.append(row)
    info.update(model=model, dataset=args.dataset, classical=params, sac_inputs=args.sac_input,
                variants={v: vars(s) for v, s in variants}, precision=args.precision)
    name = f"refine_{args.dataset}{'_' + args.tag if args.tag else ''}"
    _, md = write_results(name, info, rows, ["input", "refined", "images", *KEYS,
                                             "nuclei_changed", "s_per_image"],
                          f"sac refine on {args.dataset} validation images")
    print(md.read_text())


if __name__ == "__main__":
    main()
