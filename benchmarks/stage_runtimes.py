"""The mask decoder and the prompt generator in torch and in OpenVINO: milliseconds per pass and
how far each output is from torch fp32's, to decide whether converting them pays the way the
encoder's conversion did (``encoder_runtimes.py``).

Inputs are real: one MoNuSeg validation image at the model's half resolution (a ``--size``-px
crop) for the generator; for the decoder, that crop's embedding cut into ``--batch`` windows of
``--window`` tokens at random places, each prompted with the point at its centre (the
inference path's shapes: one batch of :meth:`sac.modeling.Sam.decode_windows`). Rows: torch
eager fp32 and bf16 autocast, OpenVINO fp32 and bf16 hints. ``max_abs_diff`` is against torch
fp32 (the decoder's mask logits; the generator's logits).

Run: ``.venv/bin/python benchmarks/stage_runtimes.py --model sac-lite-monuseg``.
Writes ``results/stage_runtimes/stage_runtimes[_<tag>].{json,md}``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from sac.core.device import autocast_context
from sac.core.resample import resample_image
from sac.model import load_model
from sac.modeling.generator import pad_to_stride
from sac.sam.transforms import prepare_batch

from bench_common import (
    isa_env,
    machine_info,
    openvino_runs,
    timed,
    validation_set,
    write_results,
)


class _Decoder(nn.Module):
    """The mask decoder on prepared windows: (windows, their PE, sparse, dense) -> logits, IoU."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, win: torch.Tensor, pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(win, pe, sparse, dense, False)


def _decoder_inputs(model: Any, x: torch.Tensor, batch: int, window: int
                    ) -> tuple[torch.Tensor, ...]:
    """``batch`` windows of the embedding of ``x`` with a centre-point prompt each."""
    sam = model.sam
    with torch.no_grad():
        emb = sam.encode(x)
        grid = emb.shape[-1]
        gen = torch.Generator().manual_seed(0)
        origins = torch.randint(0, grid - window + 1, (batch, 2), generator=gen)
        span = torch.arange(window)
        rows, cols = origins[:, 0, None] + span, origins[:, 1, None] + span
        win = emb[0][:, rows[:, :, None], cols[:, None, :]].permute(1, 0, 2, 3)
        native = sam.prompt_encoder.get_dense_pe().shape[-1]
        mid = (native - window) // 2 + span
        pe = sam.prompt_encoder.get_dense_pe()[0][:, mid[:, None], mid[None, :]]
        pe = pe[None].expand(batch, -1, -1, -1).contiguous()
        stride = x.shape[-1] / grid
        centre = ((native // 2) * stride) * torch.ones(batch, 1, 2)
        sparse, dense = sam.prompt_encoder((centre, torch.ones(batch, 1, dtype=torch.long)),
                                           None, None)
    return win, pe, sparse, dense[:, :, :window, :window].contiguous()


def _rows(name: str, net: nn.Module, inputs: tuple[torch.Tensor, ...], threads: int,
          repeats: int) -> list[dict[str, Any]]:
    runs: dict[str, Callable[[], np.ndarray]] = {}

    def torch_run(bf16: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            with torch.no_grad(), autocast_context(torch.device("cpu"), bf16):
                out = net(*inputs)
            return (out[0] if isinstance(out, tuple) else out).float().numpy()
        return run

    runs["torch fp32"] = torch_run(False)
    runs["torch bf16"] = torch_run(True)
    try:
        import openvino as ov

        with torch.no_grad():
            ov_model = ov.convert_model(net, example_input=inputs)
        runs.update(openvino_runs(ov.Core(), ov_model, threads,
                                  {"openvino fp32": "f32", "openvino bf16": "bf16"},
                                  [t.numpy() for t in inputs]))
    except ImportError as exc:
        print(f"OpenVINO rows left out: {exc}")
    ref = runs["torch fp32"]()
    rows = []
    for label, fn in runs.items():
        out, ms = timed(fn, repeats)
        rows.append({"network": name, "runtime": label, "ms_per_pass": round(ms),
                     "max_abs_diff": round(float(np.abs(out - ref).max()), 4)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="sac-lite-monuseg")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=64, help="decoder prompts per pass")
    p.add_argument("--window", type=int, default=12, help="decoder window in tokens")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    info = machine_info()
    model = load_model(args.model).eval()
    dataset, names = validation_set("monuseg", None, 1)
    rgb = resample_image(dataset[names[0]].image.astype(np.float32) / 255, 0.5)
    crop = rgb[: args.size, : args.size]
    x, _ = prepare_batch([crop], args.size, model.spec.normalization, upscale=False)
    threads = torch.get_num_threads()
    gen_in, _ = pad_to_stride(torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None],
                              model.generator.config.stride)
    rows = _rows("generator", model.generator.eval(), (gen_in,), threads, args.repeats)
    rows += _rows(f"decoder ({args.batch} prompts, {args.window}-token windows)",
                  _Decoder(model.sam.mask_decoder).eval(),
                  _decoder_inputs(model, x, args.batch, args.window), threads, args.repeats)
    info.update(model=args.model, input=f"{args.size}x{args.size}", isa_env=isa_env())
    out = "stage_runtimes" + (f"_{args.tag}" if args.tag else "")
    _, md = write_results(out, info, rows, ["network", "runtime", "ms_per_pass", "max_abs_diff"],
                          "The mask decoder and the prompt generator in torch and OpenVINO")
    print(md.read_text())


if __name__ == "__main__":
    main()
