"""Data-parallel training with PyTorch DistributedDataParallel, launched by torchrun.

``torchrun --nproc-per-node N -m sac train ...`` (or ``sac train --nproc N``, which runs
torchrun for you) starts N processes; each holds a full model, draws its own share of every
step's crops (:meth:`sac.training.sampler.CropSampler.batch`), and DDP averages the gradients
(gloo on CPU, nccl on CUDA). The frozen encoder is frozen before wrapping, so DDP and the
optimiser see only the trained tensors. Rank 0 alone validates and writes the run folder;
the others wait for it at the next step. Multi-node runs use torchrun's own rendezvous flags
(``--nnodes``, ``--node-rank``, ``--rdzv-endpoint``).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import torch
from torch import nn

from sac.training.sync import Sync

#: how long ranks wait for each other (rank 0 validates between epochs while the rest wait)
TIMEOUT = dt.timedelta(hours=2)


def launched() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> Sync:
    """Join the process group torchrun set up (environment variables); one process: no-op."""
    if not launched():
        return Sync()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))  # share the node's cores
    return Sync(dist.get_world_size(), dist.get_rank())


def local_device(device: str) -> str:
    """On CUDA, each process of a node takes the GPU of its local rank."""
    if device.startswith("cuda") and launched() and ":" not in device:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


class StepModule(nn.Module):
    """One training step as a module call, the form DistributedDataParallel wraps."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        from sac.training.step import train_step

        return train_step(self.model, *args, **kwargs)


def wrap(model: nn.Module, sync: Sync) -> nn.Module:
    """The step module, wrapped in DDP when there are several processes.

    ``find_unused_parameters``: a process whose crops gave no prompt set (or no semantic
    set) this step sends zero gradients for the decoder instead of stalling the others.
    """
    step = StepModule(model)
    if sync.world == 1:
        return step
    from torch.nn.parallel import DistributedDataParallel

    dev = next(model.parameters()).device
    ids = [dev.index] if dev.type == "cuda" else None
    return DistributedDataParallel(step, device_ids=ids, find_unused_parameters=True)


def broadcast_from_main(module: nn.Module, sync: Sync) -> None:
    """Copy rank 0's tensors of ``module`` to every process (after work only rank 0 did)."""
    if sync.world == 1:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def barrier(sync: Sync) -> None:
    """Wait until every process gets here."""
    if sync.world > 1:
        import torch.distributed as dist

        dist.barrier()
