"""How a training step's loss is normalised across data-parallel processes.

Every loss term is a mean over items (pixels, crops, prompt sets). With N processes each
holding part of the batch, a process divides its items' summed loss by the item count of the
*whole* batch, summed over processes first; the parts then add up to the loss of one process
holding the whole batch, and DistributedDataParallel's gradient average (a sum over processes
divided by N) is undone by scaling each process's loss by N. One process: nothing to sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sync:
    """``world`` processes (rank ``rank``); :meth:`sum` adds a tensor over all of them."""

    world: int = 1
    rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and validates (rank 0)."""
        return self.rank == 0

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the processes (in place, and returned)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t
