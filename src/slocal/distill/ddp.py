"""Distributed data parallel (DDP) for the training loop: joining torchrun's process group and talking across ranks.

One process, or DDP under ``torchrun`` (nccl on GPUs, gloo on CPU): each rank
trains on its own shard of the mapping frames, gradients are averaged, only
rank 0 validates and writes files. Without ``torchrun`` every helper here is a
no-op on a one-rank ``DistEnv``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from slocal.device import resolve_device


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run: its rank, the number of ranks, its GPU index on the node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> tuple[DistEnv, bool]:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1).

    Returns:
        The environment and whether this call created the group (and must destroy it).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(), False
    created = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        created = True
    return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))), created


@contextmanager
def distributed(device: str | None) -> Iterator[tuple[DistEnv, torch.device]]:
    """One run's process group: this rank's environment and torch device; the group is left at the end.

    Args:
        device: the torch device asked for (default: cuda if available); under DDP on GPUs each
            rank takes its ``LOCAL_RANK``'s card.
    """
    dev0 = resolve_device(device)
    env, created = init_distributed(dev0)
    try:
        yield env, resolve_device(device, env.local_rank) if env.active else dev0
    finally:
        if created:
            dist.destroy_process_group()


def data_parallel(module: torch.nn.Module, env: DistEnv, device: torch.device) -> torch.nn.Module:
    """``module`` wrapped for DDP (gradients averaged over ranks), or itself in a one-rank run."""
    if not env.active:
        return module
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None
    )


def barrier(env: DistEnv) -> None:
    """Wait for every rank (nothing to wait for in a one-rank run)."""
    if env.active:
        dist.barrier()


def max_over_ranks(value: float, env: DistEnv, device: torch.device) -> float:
    """The largest ``value`` of all ranks (the slowest rank's clock, so all ranks stop together)."""
    if not env.active:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def gather_states(state: dict, env: DistEnv) -> list:
    """Every rank's ``state`` in rank order (just ``[state]`` without DDP)."""
    if not env.active:
        return [state]
    gathered: list = [None] * env.world_size
    dist.all_gather_object(gathered, state)
    return gathered
