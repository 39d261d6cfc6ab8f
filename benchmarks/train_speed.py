"""Training-step speed on this CPU: what each CPU measure buys.

Times full training steps (generator + LoRA-adapted LiteMedSAM + mask decoder, forward and
backward, optimiser step) on real MoNuSeg crops, batch 2 SAM crops + 6 generator-only crops,
16 prompt sets per crop, for these settings:

* ``autograd everywhere``: fp32, autograd through the whole encoder (nothing frozen is skipped);
* ``frozen stem without autograd``: fp32, the convolutional stem (no LoRA) under no_grad;
* ``+ bf16``: the encoder in bf16 autocast;
* ``+ LoRA in the last stage only``: blocks before it run without autograd too (an option,
  not the paper's setting).

Run: ``.venv/bin/python benchmarks/train_speed.py [--steps 4]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from sac.data import MoNuSegDataset
from sac.data.splits import load_builtin_split
from sac.model import create_model
from sac.modeling import LoRAConfig
from sac.training.augment import AugmentConfig
from sac.training.sampler import CropSampler, load_images
from sac.training.step import StepConfig, train_step
from sac.training.trainer import TrainConfig, _optimizer, set_trainable

from bench_common import machine_info, write_results

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "monuseg" / "train"


def time_steps(step_cfg: StepConfig, lora: LoRAConfig, images, steps: int) -> list[float]:
    torch.manual_seed(0)
    model = create_model(lora=lora)
    set_trainable(model, model.config.parts)
    opt = _optimizer(model, model.config.parts, TrainConfig())
    sampler = CropSampler(images, model.spec.image_size, AugmentConfig.for_modality("he"))
    times = []
    for step in range(steps + 1):
        crops = sampler.batch(0, step, 8)
        t0 = time.perf_counter()
        model.train_mode(model.config.parts)
        rngs = [np.random.default_rng([step, j]) for j in range(2)]
        out = train_step(model, crops[:2], step_cfg, rngs, 200 + step, crops[2:])
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        if step:  # the first step warms up
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--data", type=Path, default=DATA)
    args = p.parse_args()
    ds = MoNuSegDataset(args.data)
    images, _ = load_images(ds, load_builtin_split("monuseg").train[:4], 1.0)
    base = StepConfig(generator_warmup=0)
    settings = [
        ("autograd everywhere", dataclasses.replace(base, frozen_prefix_no_grad=False),
         LoRAConfig()),
        ("frozen stem without autograd", base, LoRAConfig()),
        ("+ bf16", dataclasses.replace(base, bf16=True), LoRAConfig()),
        ("+ LoRA in the last stage only", dataclasses.replace(base, bf16=True),
         LoRAConfig(blocks=(8, 9))),
    ]
    rows = []
    for name, cfg, lora in settings:
        t = time_steps(cfg, lora, images, args.steps)
        med = statistics.median(t)
        rows.append({"setting": name, "steps": len(t), "s_per_step": round(med, 2),
                     "sam_crops_per_s": round(2 / med, 3)})
        print(rows[-1], flush=True)
    info = machine_info()
    info.update(batch="2 SAM crops + 6 generator-only crops", prompts_per_crop=16,
                backbone="lite_medsam 256x256")
    _, md = write_results("train_speed", info, rows,
                          ["setting", "steps", "s_per_step", "sam_crops_per_s"],
                          "Training-step speed")
    print(md.read_text())


if __name__ == "__main__":
    main()
