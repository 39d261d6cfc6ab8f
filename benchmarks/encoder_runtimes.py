"""The image encoder alone in each runtime and precision: milliseconds per pass and how far
its embedding is from torch fp32's, on one validation image's encoder input.

Rows: torch eager fp32 and bf16 autocast; ONNX Runtime fp32 and its dynamic int8
quantization (weights int8, activations quantized on the fly: ``onnxruntime.quantization.
quantize_dynamic``); OpenVINO with fp32 and bf16 precision hints, and OpenVINO int8 (static
post-training quantization with NNCF, calibrated on ``--calibration`` MoNuSeg *training* images
at the model's half resolution; run with a bf16 and an fp32 hint for the layers it leaves in
floating point; left out where ``nncf`` is not installed). Each runs ``--repeats``
passes after one warm-up on the same padded input (``--size`` px, a MoNuSeg validation image at
the model's half resolution); ``cos_mean``/``cos_min`` are the cosine similarities of each
embedding token to torch fp32's. Conversion times (export, quantization) are reported apart.
Whole-pipeline accuracy of the kept runtimes is in ``speed.py``'s results.

Run: ``.venv/bin/python benchmarks/encoder_runtimes.py --model sac-lite-monuseg``.
Writes ``results/encoder_runtimes/encoder_runtimes[_<tag>].{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sac.core.resample import resample_image
from sac.model import load_model
from sac.sam.transforms import prepare_batch

from bench_common import (
    isa_env,
    machine_info,
    openvino_runs,
    timed,
    validation_set,
    write_results,
)


def cosines(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and minimum per-token cosine similarity of two (1, C, h, w) embeddings."""
    num = (a * b).sum(1)
    cos = num / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return round(float(cos.mean()), 5), round(float(cos.min()), 5)


def calibration_inputs(dataset_name: str, size: int, normalization: Any, n: int,
                       scale: float = 0.5) -> list[np.ndarray]:
    """Encoder inputs from the first ``n`` *training* images of a dataset's built-in split
    (never validation ones): ``size``-px crops at ``scale``, normalised and padded as the
    pipeline does."""
    from sac.core.images import as_model_rgb
    from sac.data.open import open_dataset
    from sac.data.splits import load_builtin_split

    from bench_common import DATASETS

    fmt, folder = DATASETS[dataset_name]
    dataset = open_dataset(folder, fmt)
    out = []
    for name in load_builtin_split(dataset_name).train[:n]:
        rgb = resample_image(as_model_rgb(dataset[name].image, name), scale)
        batch, _ = prepare_batch([rgb[:size, :size]], size, normalization, upscale=False)
        out.append(batch.numpy())
    return out


def int8_model(ov_model: Any, calib: list[np.ndarray]) -> Any:
    """``ov_model`` statically quantized to int8 by NNCF, its activation ranges calibrated on
    the encoder inputs ``calib``."""
    import nncf

    return nncf.quantize(ov_model, nncf.Dataset(calib), subset_size=len(calib))


class Int8Encoder:
    """A pipeline encoder (:class:`sac.sam.runtime.Encoder`) running the OpenVINO encoder
    quantized to int8 (:func:`int8_model`), the rest in bf16 where asked and fp32 elsewhere;
    for measuring int8 in the whole pipeline (``speed.py --variant LABEL:int8=N``).

    NNCF's quantized encoder runs only at the input size it was calibrated at (other sizes
    fail OpenVINO's shape inference), so each new size is quantized anew, calibrated on
    ``calib(size)``, outside the timed calls' budget only in that it happens once."""

    multiple = 16

    def __init__(self, sam: Any, calib: Callable[[int], list[np.ndarray]],
                 threads: int) -> None:
        import openvino as ov

        from sac.sam.runtime import OpenVinoEncoder

        self.core = ov.Core()
        base = OpenVinoEncoder(sam)
        self.path = base.path if base.path.is_file() else base.convert()
        self.calib, self.threads = calib, threads
        self.compiled: dict[tuple[int, bool], Any] = {}

    def prepare(self, size: int) -> None:
        """Quantize for ``size``-px inputs (both precisions of the rest)."""
        if (size, False) in self.compiled:
            return
        quantized = int8_model(self.core.read_model(self.path), self.calib(size))
        for bf16 in (False, True):
            self.compiled[size, bf16] = self.core.compile_model(quantized, "CPU", {
                "INFERENCE_NUM_THREADS": self.threads,
                "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32"})

    def __call__(self, pixels: torch.Tensor, bf16: bool) -> torch.Tensor:
        size = int(pixels.shape[-1])
        self.prepare(size)
        out = self.compiled[size, bf16](pixels.detach().float().cpu().contiguous().numpy())[0]
        return torch.from_numpy(out).to(pixels.device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="sac-lite-monuseg")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calibration", type=int, default=24,
                   help="training images for the int8 calibration (default 24)")
    p.add_argument("--tag", default="")
    args = p.parse_args()
    info = machine_info()
    model = load_model(args.model).eval()
    dataset, names = validation_set("monuseg", None, 1)
    rgb = resample_image(dataset[names[0]].image.astype(np.float32) / 255, 0.5)
    x, _ = prepare_batch([rgb[: args.size, : args.size]], args.size, model.spec.normalization,
                         upscale=False)
    enc = model.sam.image_encoder.eval()
    threads = torch.get_num_threads()
    runs: dict[str, Callable[[], np.ndarray]] = {}
    prep: dict[str, float] = {}

    def torch_run(bf16: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                return model.sam.encode(x).float().numpy()
        return run

    runs["torch fp32"] = torch_run(False)
    runs["torch bf16"] = torch_run(True)
    tmp = Path(tempfile.mkdtemp())
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        t0 = time.perf_counter()
        with torch.no_grad():
            torch.onnx.export(enc, (x,), tmp / "e.onnx", dynamo=True, optimize=True)
        prep["onnx export"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        quantize_dynamic(tmp / "e.onnx", tmp / "q.onnx", weight_type=QuantType.QInt8)
        prep["int8 quantization"] = time.perf_counter() - t0
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        for label, f in (("onnxruntime fp32", "e.onnx"), ("onnxruntime int8", "q.onnx")):
            sess = ort.InferenceSession(str(tmp / f), opts, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            runs[label] = lambda s=sess, n=name: s.run(None, {n: x.numpy()})[0]
    except ImportError as exc:
        print(f"ONNX Runtime rows left out: {exc}")
    try:
        import openvino as ov

        t0 = time.perf_counter()
        with torch.no_grad():
            ov_model = ov.convert_model(enc, example_input=x, input=[1, 3, -1, -1])
        prep["openvino conversion"] = time.perf_counter() - t0
        core = ov.Core()
        runs.update(openvino_runs(core, ov_model, threads,
                                  {"openvino fp32": "f32", "openvino bf16": "bf16"}, x.numpy()))
        try:
            t0 = time.perf_counter()
            q_model = int8_model(ov_model, calibration_inputs(
                "monuseg", args.size, model.spec.normalization, args.calibration))
            prep["int8 calibration (nncf)"] = time.perf_counter() - t0
            runs.update(openvino_runs(core, q_model, threads,
                                      {"openvino int8 (bf16 rest)": "bf16",
                                       "openvino int8 (fp32 rest)": "f32"}, x.numpy()))
        except ImportError as exc:
            print(f"OpenVINO int8 rows left out: {exc}")
    except ImportError as exc:
        print(f"OpenVINO rows left out: {exc}")
    ref = runs["torch fp32"]()
    rows: list[dict[str, Any]] = []
    for label, fn in runs.items():
        out, ms = timed(fn, args.repeats)
        mean, low = cosines(ref, out)
        rows.append({"runtime": label, "ms_per_pass": round(ms), "cos_mean": mean,
                     "cos_min": low})
        print(rows[-1], flush=True)
    for f in tmp.iterdir():
        os.unlink(f)
    tmp.rmdir()
    info.update(model=args.model, input=f"{args.size}x{args.size}",
                conversion_s={k: round(v, 1) for k, v in prep.items()}, isa_env=isa_env())
    out = "encoder_runtimes" + (f"_{args.tag}" if args.tag else "")
    _, md = write_results(out, info, rows, ["runtime", "ms_per_pass", "cos_mean", "cos_min"],
                          "The image encoder in each runtime and precision")
    print(md.read_text())


if __name__ == "__main__":
    main()
