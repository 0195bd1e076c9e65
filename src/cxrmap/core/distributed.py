"""One process, or many under ``torchrun``: the process group, the device, and the epoch's data plan.

``torchrun --nproc_per_node N -m cxrmap train ...`` (or ``... predict ...``) starts N processes with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`setup` joins them into a process group (``nccl`` on
GPUs, ``gloo`` on CPUs). Training runs :class:`~torch.nn.parallel.DistributedDataParallel` on each
process's shard of every epoch (:class:`EpochPlan`) and only rank 0 writes files; prediction gives each
process its share of the files and rank 0 merges their results. Without those variables everything runs
in one process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from cxrmap.core.runtime import resolve_device


@dataclass(frozen=True)
class Context:
    """Where this process runs and who it is among the processes of the run.

    Attributes:
        rank, world_size, local_rank: as set by ``torchrun`` (0, 1, 0 alone).
        device: the ``torch.device`` this process computes on.
        backend: the process group's backend, ``None`` alone.
    """

    rank: int
    world_size: int
    local_rank: int
    device: object
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True in the one process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1


def setup(device: str | None = None) -> Context:
    """Join the ``torchrun`` process group if this process was started by one; pick the device.

    Each process takes the GPU of its ``LOCAL_RANK`` where GPUs are used.
    """

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device)
    if world_size <= 1:
        return Context(0, 1, 0, chosen)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Context(rank, world_size, local_rank, chosen, backend)


def teardown(context: Context) -> None:
    """Leave the process group joined by :func:`setup` (no-op alone)."""

    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: Context) -> None:
    """Wait until every process gets here (no-op alone)."""

    if context.distributed:
        dist.barrier()


def all_reduce_sum(values: list[float], context: Context) -> list[float]:
    """Sum ``values`` over every process (float64 on the process's device); returned to every process."""

    if not context.distributed:
        return [float(v) for v in values]
    tensor = torch.tensor(values, dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def gather_object(value, context: Context) -> list:
    """Every process's ``value``, by rank, in every process (``[value]`` alone)."""

    if not context.distributed:
        return [value]
    box = [None] * context.world_size
    dist.all_gather_object(box, value)
    return box


def broadcast_object(value, context: Context):
    """Rank 0's ``value`` in every process (no-op alone)."""

    if not context.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """Ask torch for deterministic algorithms inside the block, then restore the previous setting."""

    if not enabled:
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


class EpochPlan:
    """The batches of one epoch for one process: a seeded shuffle, sharded across processes.

    Like ``torch.utils.data.DistributedSampler``, the epoch's permutation (seeded with ``(seed, epoch)``,
    identical in every process) is padded by wrapping around to a multiple of ``world_size`` and rank
    ``r`` takes positions ``r, r + world_size, ...``. The shard is cut into batches of ``batch_size``
    (the per-process batch); a last batch of one image is dropped where ``drop_single`` is set
    (BatchNorm cannot train on one image).

    Example:
        >>> plan = EpochPlan(10, batch_size=4, seed=0, epoch=0)
        >>> [len(b) for b in plan]
        [4, 4, 2]
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        drop_single: bool = False,
    ) -> None:
        order = np.random.default_rng([seed, epoch, 2]).permutation(n)
        total = -(-n // world_size) * world_size
        order = np.resize(order, total) if n else order
        shard = order[rank:total:world_size]
        batches = [shard[i : i + batch_size].tolist() for i in range(0, len(shard), batch_size)]
        if drop_single and batches and len(batches[-1]) == 1:
            batches.pop()
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
