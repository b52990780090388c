"""Where a training process sits in a (possibly one-process) ``torchrun`` job, and the few
collective operations the trainer needs; in a single process each is the identity.

Under ``torchrun`` (WORLD_SIZE > 1) every process is a rank of a PyTorch
DistributedDataParallel job: NCCL on CUDA, Gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Ranks:
    """Where this process sits in a (possibly one-process) distributed job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def start_ranks(device: str) -> Ranks:
    """Join the torchrun job if there is one (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return ranks


def stop_ranks(ranks: Ranks) -> None:
    """Leave the torchrun job (nothing to do in a single process)."""
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def pick_device(name: str, ranks: Ranks) -> torch.device:
    """The device for ``--device`` (auto: CUDA when there is one); each rank its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and ranks.distributed:
        return torch.device("cuda", ranks.local_rank)
    return torch.device(name)


def all_sum(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    """``values`` summed over every rank."""
    if not ranks.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]


def all_max(value: int, ranks: Ranks, device: torch.device) -> int:
    """The largest ``value`` of any rank."""
    if not ranks.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def any_rank(flags: list[bool], ranks: Ranks, device: torch.device) -> list[bool]:
    """Each flag, set when it is set on any rank (decisions every rank must take together)."""
    if not ranks.distributed:
        return flags
    tensor = torch.tensor([int(f) for f in flags], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def all_gather(value: object, ranks: Ranks) -> list[object]:
    """Every rank's ``value``, in rank order (any picklable object)."""
    if not ranks.distributed:
        return [value]
    gathered: list[object] = [None] * ranks.world
    dist.all_gather_object(gathered, value)
    return gathered
