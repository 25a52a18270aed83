r"""Data-parallel training on ``torch.distributed``: the process group, shards and reductions.

``N`` processes each hold the whole model; every optimiser step takes one global batch of
``B = batch_size`` structures, of which rank ``r`` reads and differentiates the structures
``r, r + N, r + 2N, ...`` (:meth:`World.shard`). The loss of a batch is, per term :math:`t`,
a sum of weighted squared errors :math:`S_t` over a count :math:`C_t` (:mod:`.loss`). Each
rank divides its own sums by the *global* counts,

.. math::

    L_r = \sum_t \lambda_t S_{t,r} / \textstyle\sum_{r'} C_{t,r'},

so that the all-reduced sum of the ranks' gradients, :math:`\sum_r \nabla L_r`, is the
gradient one process computes on the whole batch: N processes with a global batch B take the
same steps as one process with batch B (up to the order of floating-point sums). One process
computes exactly what it always did (its counts are the global ones).

The gradients are summed with one ``all_reduce`` of a flat buffer after ``backward`` (rather
than through ``DistributedDataParallel``'s hooks): forces and stress are autograd derivatives
taken inside the forward pass, and a head without labels in a batch leaves parameters without
a gradient, both of which DDP's bucketed hooks handle only with extra options. A rank whose
share of a short last batch is empty contributes zeros.

The group is joined by :func:`join`: one already initialised by the caller is used as it is;
under ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` for each process it starts) the group is initialised with gloo on the CPU and
NCCL on CUDA devices, and destroyed when the run ends. Without either, the run is one process.
A collective that fails because another process died is a :class:`WorldError` naming the rank.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from tensorpot.errors import TensorPotError

__all__ = ["SINGLE", "World", "WorldError", "join"]

#: How long a collective waits for the other processes before it fails (a dead peer on gloo
#: fails at once; a hung one after this).
TIMEOUT = datetime.timedelta(minutes=10)


class WorldError(TensorPotError):
    """A collective failed: another process of the run stopped or cannot be reached."""


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run (``size`` 1: a single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        """Whether there is more than one process."""
        return self.size > 1

    def device(self, device: torch.device) -> torch.device:
        """The device of this process: CUDA device ``local_rank`` when the run is on CUDA and
        parallel without a device index, else ``device``."""
        if self.parallel and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, indices: Sequence[int]) -> list[int]:
        """This rank's part of a global batch: every ``size``-th index from ``rank``."""
        return [int(i) for i in indices[self.rank :: self.size]]

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the processes in place (nothing for a single process).

        NCCL reduces CUDA tensors only: a CPU tensor goes through this rank's GPU."""
        if not self.parallel:
            return tensor
        with _collective(self, "all_reduce"):
            if tensor.device.type == "cpu" and dist.get_backend() == "nccl":
                moved = tensor.to(torch.device("cuda", self.local_rank))
                dist.all_reduce(moved)
                tensor.copy_(moved.cpu())
            else:
                dist.all_reduce(tensor)
        return tensor

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (a picklable object of plain data) on every rank."""
        if not self.parallel:
            return value
        box = [value if self.is_main else None]
        with _collective(self, "broadcast"):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every process has arrived."""
        if self.parallel:
            with _collective(self, "barrier"):
                dist.barrier()

    def all_reduce_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Sum the gradients of ``parameters`` over the processes.

        One flat buffer, one ``all_reduce``. A parameter without a gradient on some rank counts
        as zeros there; one without a gradient on every rank keeps none (as in one process,
        where the optimiser then skips it).
        """
        if not self.parallel:
            return
        parts = [p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
                 for p in parameters]  # fmt: skip
        present = [torch.ones(1) if p.grad is not None else torch.zeros(1) for p in parameters]
        flat = torch.cat([*parts, *(f.to(parts[0]) for f in present)]) if parts else None
        if flat is None:
            return
        self.all_reduce(flat)
        offset, flags = 0, flat[-len(parameters) :]
        for param, flag in zip(parameters, flags):
            count = param.numel()
            if float(flag) > 0:
                param.grad = flat[offset : offset + count].view_as(param).clone()
            offset += count


#: The world of a run that is one process.
SINGLE = World()


@contextmanager
def _collective(world: World, what: str) -> Iterator[None]:
    """Turn the failure of a collective (a dead or unreachable peer) into a WorldError."""
    try:
        yield
    except (RuntimeError, dist.DistError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WorldError(
            f"rank {world.rank} of {world.size}: {what} failed, another process of the run "
            f"stopped or cannot be reached ({first[:200]}); the run stops here, and "
            "--resume continues it from its last checkpoint"
        ) from None


def _backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def join(device: torch.device) -> Iterator[World]:
    """The :class:`World` of this process for the duration of a run.

    A process group the caller initialised is used and left alone; else, when ``torchrun``
    started this process (``WORLD_SIZE`` > 1 in its environment), one is initialised with
    gloo (CPU) or NCCL (CUDA) and destroyed on exit; else the run is a single process.
    """
    if dist.is_available() and dist.is_initialized():
        yield World(dist.get_rank(), dist.get_world_size(), _local_rank())
        return
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or not dist.is_available():
        yield World()
        return
    world = World(int(os.environ["RANK"]), size, _local_rank())
    kwargs: dict[str, Any] = {}
    if device.type == "cuda":  # this process was started for this rank: its GPU is current
        kwargs["device_id"] = world.device(device)
        torch.cuda.set_device(kwargs["device_id"])
    try:
        dist.init_process_group(_backend(device), timeout=TIMEOUT, **kwargs)
    except (RuntimeError, ValueError, dist.DistError) as err:
        raise WorldError(f"rank {world.rank}: cannot join the process group: {err}") from None
    try:
        yield world
    finally:
        dist.destroy_process_group()


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))
