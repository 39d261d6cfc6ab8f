"""One process of a data-parallel test run (started by torch.multiprocessing, importable by
the children through the inherited sys.path): a tiny model trained on synthetic disks."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch


class Interrupted(Exception):
    """Raised by the step hook to stop a run as Ctrl-C would."""


def disk_images(n: int = 4) -> list[Any]:
    from sac.training.sampler import TrainImage

    from synthetic import disk_image

    out = []
    for i in range(n):
        disks = [(30 + 5 * i, 30, 10), (34, 90, 12), (90, 40, 11), (96, 100 - 4 * i, 9)]
        img, lab = disk_image((128, 128), disks, seed=i)
        out.append(TrainImage(f"d{i}", img.astype(np.float32) / 255, lab))
    return out


def initial() -> dict[str, torch.Tensor]:
    """The trained parts of the tiny model before any step (seed 0, as in :func:`train`)."""
    from sac.model import create_model

    torch.manual_seed(0)
    model = create_model(tiny=True)
    return {f"{p}.{k}": v.detach().clone() for p in model.config.parts
            for k, v in model.part_state(p).items()}


def train(out: Path, batch: int, gen_batch: int, epochs: int, steps: int,
          sync: Any = None, resume: bool = False, stop_at: int | None = None,
          generator_steps: int = 0) -> dict[str, torch.Tensor]:
    """Train the tiny model (seed 0) and return its trained tensors."""
    from sac.model import create_model
    from sac.training.generator_stage import GeneratorStageConfig
    from sac.training.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    model = create_model(tiny=True)
    stage = GeneratorStageConfig(steps=generator_steps, batch_size=2, warmup_steps=1)
    cfg = TrainConfig(epochs=epochs, steps_per_epoch=steps, batch_size=batch,
                      generator_batch=gen_batch, warmup_steps=2, lr=1e-3, save_dtype="float32",
                      generator_stage=stage)
    trainer = Trainer(model, disk_images(), [], out, cfg, sync=sync)

    def hook(step: int, _: dict[str, float]) -> None:
        if step == stop_at:
            raise Interrupted

    with contextlib.suppress(Interrupted):
        trainer.run(resume=resume, progress=False, on_step=hook)
    return {f"{p}.{k}": v.detach().clone() for p in model.config.parts
            for k, v in model.part_state(p).items()}


def worker(rank: int, world: int, port: int, out: str, result: str, batch: int,
           gen_batch: int, epochs: int, steps: int, resume: bool, stop_at: int | None,
           generator_steps: int = 0) -> None:
    """torch.multiprocessing.spawn entry: join the group, train, save this rank's tensors."""
    from sac.training.distributed import init_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world))
    sync = init_distributed(torch.device("cpu"))
    tensors = train(Path(out), batch, gen_batch, epochs, steps, sync, resume, stop_at,
                    generator_steps)
    torch.save(tensors, f"{result}.{rank}.pt")
    import torch.distributed as dist

    dist.destroy_process_group()
