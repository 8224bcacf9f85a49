"""Evaluation over several processes started by ``torchrun`` or SLURM's ``srun``.

Each process (rank) describes its share of every set's chunks (``utils.evaluation.streaming``)
into the run folder, which all ranks must see (one machine, or a shared file system across
nodes); rank 0 then searches and writes the results. The ranks talk through
``torch.distributed`` with the gloo backend (CPU tensors, any network), only to agree on the run
folder, to wait for each other and to count progress: no descriptor travels between them.

The rank and world size come from the environment:

- ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
- ``srun`` sets ``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID``: ``MASTER_ADDR`` (the
  first node's host name) and ``MASTER_PORT`` are the job script's to export.

Without either (a plain ``python eval.py``) there is one process and nothing is initialised.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from utils.errors import UserError
from utils.evaluation.inference import default_device

WAIT_TIMEOUT = timedelta(hours=24)
"""How long a rank waits for the others (rank 0 may search a large database meanwhile)."""
PROGRESS_KEY = "eval/images_described"


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands among the evaluation's processes.

    Attributes:
        rank: this process's number, ``0 <= rank < world_size``; rank 0 searches and writes.
        world_size: number of processes.
        local_rank: number among the processes of this node (its GPU: ``cuda:<local_rank>``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank is here (nothing with one process)."""
        if self.distributed:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (picklable, e.g. the run folder's path)."""
        if not self.distributed:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def total(self, value: int) -> int:
        """The sum of ``value`` over all ranks (every rank must call it)."""
        if not self.distributed:
            return value
        summed = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(summed)
        return int(summed.item())

    def count(self, key: str, images: int) -> int:
        """Add ``images`` to counter ``key`` of all ranks together (no waiting for the others);
        returns the count so far (with one process: ``images``, nothing is kept)."""
        if not self.distributed:
            return images
        store = dist.distributed_c10d._get_default_store()
        return int(store.add(f"{PROGRESS_KEY}/{key}", images))

    def device(self, asked: torch.device | None = None) -> torch.device:
        """This rank's device: ``asked``, a CUDA device without an index becoming this rank's GPU
        (``cuda:<local_rank>``); with nothing asked, this rank's GPU when there are GPUs, else the CPU."""
        asked = asked or default_device()
        if asked.type == "cuda" and asked.index is None and self.distributed:
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return asked

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def context_from_environment(environment: Mapping[str, str] = os.environ) -> DistributedContext:
    """The context of this process from ``torchrun``'s or ``srun``'s variables, the process group
    initialised (gloo) when there is more than one process.

    Raises:
        UserError: several processes but no ``MASTER_ADDR``/``MASTER_PORT`` to meet at.
    """
    if "WORLD_SIZE" in environment:
        rank, world, local = (int(environment.get(name, 0)) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    elif "SLURM_NTASKS" in environment and "SLURM_PROCID" in environment:
        rank, world, local = (int(environment.get(name, 0)) for name in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"))
    else:
        return DistributedContext()
    context = DistributedContext(rank, world, local)
    if not context.distributed:
        return context
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in environment]
    if missing:
        raise UserError(f"{world} processes but no {' or '.join(missing)} in the environment: export the first "
                        "node's host name as MASTER_ADDR and a free port as MASTER_PORT (torchrun sets both)")
    if not dist.is_initialized():
        os.environ.update({"MASTER_ADDR": environment["MASTER_ADDR"], "MASTER_PORT": environment["MASTER_PORT"]})
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world, timeout=WAIT_TIMEOUT)
    return context
