"""Speed and accuracy of inference settings, side by side: seconds per image from file to
written labels, per stage, megapixels per second at the model's scale, and the accuracy of
the same run, for H&E (MoNuSeg) or fluorescence (DSB 2018) validation images.

Each ``--variant LABEL:key=value,...`` is a set of :class:`~sac.pipeline.segmenter.Segmenter`
settings: ``tile`` (largest side of one encoder pass; 256 = model-sized tiles, the code
before issue 47), ``precision`` (auto, fp32, bf16), ``batch`` (prompt sets per decoder batch),
``window`` (the smallest decoder window in embedding tokens), ``runtime`` (where the encoder
runs: torch or openvino, converted before timing), ``int8`` (N: the encoder in OpenVINO
quantized to int8 by NNCF, calibrated on the first N training images of the dataset:
``encoder_runtimes.Int8Encoder``). :data:`BEFORE` names the settings of the
code before issue 47; each variant leaves the rest at the defaults.
The variants segment every image in turn (alternating, so a change of machine load hits all
alike): read the file, segment, write ``<stem>_labels.tif`` to a temporary folder. Rows:
per variant, mean and median seconds per image, the mean of each stage (generator includes
the size estimate), megapixels at the model's scale per second, seconds per megapixel at
the model's scale (over all images, and the median of the images' own), accuracy, and the
process's peak resident memory at the end of the run.

To time a CPU without native bf16 (AVX2 only, most laptops) on one with it, run with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``: torch's kernels then use only AVX2 (the
environment is recorded; ``precision=auto`` still reads the CPU's flags, so name the
precision in each variant there).

Run: ``.venv/bin/python benchmarks/speed.py --dataset monuseg --model sac-lite-monuseg
--variant before:tile=256 --variant now:tile=1024``.
Writes ``results/speed/speed_<dataset>[_<tag>].{json,md}``.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sac.core.device import native_bf16, resolve_device
from sac.data.images import read_image
from sac.metrics import aggregate, evaluate_pair
from sac.model import load_model
from sac.outputs.images import write_labels_tif
from sac.pipeline.segmenter import Segmenter

from bench_common import (
    isa_env,
    machine_info,
    validation_parser,
    validation_set,
    write_results,
)

KEYS = ["aji", "dsb_score", "pixel_dice", "f1_obj"]
STAGES = ["read", "generator", "prompts", "encoder", "decoder", "postprocess", "write"]
#: variant keys -> (Segmenter argument, type)
SETTINGS = {"tile": ("tile_size", int), "precision": ("precision", str),
            "batch": ("batch_size", int), "window": ("decode_window", int),
            "runtime": ("runtime", str), "int8": ("int8", int)}
#: the inference settings of the code before issue 47
BEFORE = "before:tile=256,window=16,runtime=torch"


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``"now:tile=1024,precision=bf16"`` -> ``("now", {"tile_size": 1024, ...})``."""
    label, _, rest = text.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in SETTINGS:
            raise SystemExit(f"--variant {text!r}: unknown setting {key!r}; known: "
                             f"{sorted(SETTINGS)}")
        name, kind = SETTINGS[key]
        kwargs[name] = kind(value)
    return label, kwargs


def timed_run(seg: Segmenter, path: Path, name: str, out: Path) -> tuple[Any, dict[str, float]]:
    """Read, segment and write one image; the result and the seconds of each stage."""
    t0 = time.perf_counter()
    image = read_image(path)
    t1 = time.perf_counter()
    res = seg.segment(image, name)
    t2 = time.perf_counter()
    write_labels_tif(out / f"{name}_labels.tif", res.labels)
    t3 = time.perf_counter()
    times = {"total": t3 - t0, "read": t1 - t0, "write": t3 - t2}
    times.update({k: v for k, v in res.timings.items() if k not in times})
    h, w = image.shape[:2]
    scale = res.size.scale if res.size is not None else seg.config.input_scale
    times["mpx_model"] = h * w * scale * scale / 1e6
    return res, times


def main() -> None:
    p = validation_parser(__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--variant", action="append", default=None,
                   help="LABEL:key=value,... (keys: tile, precision, batch, window, runtime); "
                        f"repeat it. Default: {BEFORE} and now: (the defaults)")
    args = p.parse_args()
    info = machine_info()  # at the start: the commit whose code runs
    dataset, names = validation_set(args.dataset, args.data, args.limit)
    model = load_model(args.model)
    variants = dict(parse_variant(v) for v in (args.variant or [BEFORE, "now:"]))
    int8 = {label: kw.pop("int8") for label, kw in variants.items() if "int8" in kw}
    segs = {label: Segmenter(model, **{"precision": args.precision, **kw})
            for label, kw in variants.items()}
    for label, n in int8.items():
        from encoder_runtimes import Int8Encoder, calibration_inputs

        segs[label].predictor.encoder = Int8Encoder(
            model.sam, lambda size, n=n: calibration_inputs(
                args.dataset, size, model.spec.normalization, n, model.config.input_scale),
            torch.get_num_threads())
    shapes = {dataset[n].image.shape: n for n in names}  # one image of each size
    for seg in segs.values():  # warm-up: first calls convert, allocate, pick kernels
        seg.segment(dataset[names[0]].image[:256, :256], "warm-up")
        for name in shapes.values():
            seg.segment(dataset[name].image, name)
    scores: dict[str, list[dict[str, float]]] = {v: [] for v in segs}
    times: dict[str, list[dict[str, float]]] = {v: [] for v in segs}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(names):
            truth = dataset[name].labels
            for label, seg in segs.items():
                out = Path(tmp) / label
                out.mkdir(exist_ok=True)
                res, t = timed_run(seg, dataset.item(name).image, name, out)
                times[label].append(t)
                scores[label].append(evaluate_pair(truth, res.labels))
            print(f"[{i + 1}/{len(names)}] {name}: " + ", ".join(
                f"{v} {times[v][-1]['total']:.2f} s AJI {scores[v][-1]['aji']:.3f}"
                for v in segs), flush=True)
    rows = []
    for label, seg in segs.items():
        ts = times[label]
        total = [t["total"] for t in ts]
        mpx = sum(t["mpx_model"] for t in ts)
        agg = aggregate(scores[label])
        row: dict[str, Any] = {
            "variant": label, "tile": seg.tile_size, "precision": seg.precision,
            "window": seg.options.decode_window,
            "runtime": seg.predictor.runtime + (f" int8 ({int8[label]} images)"
                                                if label in int8 else ""),
            "images": len(ts), "s_per_image": round(statistics.fmean(total), 2),
            "median_s": round(statistics.median(total), 2),
            **{f"{k}_s": round(statistics.fmean(t.get(k, 0.0) for t in ts), 2)
               for k in STAGES},
            "mpx_model": round(mpx, 2), "mpx_per_s": round(mpx / sum(total), 3),
            "s_per_mpx": round(sum(total) / mpx, 2),
            "median_s_per_mpx": round(statistics.median(
                t["total"] / t["mpx_model"] for t in ts), 2),
            **{k: round(float(agg[k]), 4) for k in KEYS}}
        rows.append(row)
    info.update(dataset=args.dataset, model=str(args.model), images=len(names),
                native_bf16=native_bf16(resolve_device("cpu")),
                isa_env=isa_env(),
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    cols = ["variant", "tile", "precision", "window", "runtime", "images", "s_per_image",
            "median_s",
            *[f"{k}_s" for k in STAGES], "mpx_model", "mpx_per_s", "s_per_mpx",
            "median_s_per_mpx", *KEYS]
    out = "speed_" + args.dataset + (f"_{args.tag}" if args.tag else "")
    _, md = write_results(out, info, rows, cols,
                          f"Speed and accuracy per inference setting ({args.dataset})")
    print(md.read_text())


if __name__ == "__main__":
    main()
