"""Where this training process runs: single process, or one rank of a `torchrun` job.

`torchrun --nproc_per_node N -m es_rerank train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
each rank then uses GPU LOCAL_RANK with NCCL, or the CPU with gloo when there is no GPU.
Without those variables the run is a plain single process.

Example:
    >>> runtime = start_runtime(env={})
    >>> runtime.world_size, runtime.is_main
    (1, True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist

from es_rerank.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    """This process's rank, the number of processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start_runtime(env: Mapping[str, str] | None = None, use_cuda: bool | None = None) -> Runtime:
    """Read the torchrun variables and join the process group when there is more than one process."""
    env = os.environ if env is None else env
    try:
        world_size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {exc}",
                          hint="launch multi-process training with torchrun") from exc
    cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible",
                              hint="set --nproc_per_node to at most the number of GPUs")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo",
                                device_id=device if cuda else None)
    return Runtime(rank, world_size, local_rank, device)


def stop_runtime(runtime: Runtime) -> None:
    """Leave the process group (a no-op for a single process)."""
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(runtime: Runtime) -> None:
    """Wait for every rank (e.g. while rank 0 evaluates or saves)."""
    if runtime.distributed:
        dist.barrier()


def sum_over_ranks(value: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """The sum of `value` over all ranks (the value itself for a single process)."""
    if runtime.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value
