"""Data-parallel training's plumbing (torchrun, PyTorch DistributedDataParallel): the process group, each rank's
share of a global batch, and the few collectives `train` needs. One process (no torchrun) is a group of one, and
every function is then a no-op that changes no number.

Each step, every rank takes a contiguous share of the single-process run's batch, so N processes take exactly the
steps one process takes with the same --batch-size, and give the same weights up to float summation order."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from hashtagger.errors import DataError, HashtaggerError

T = TypeVar("T")
Loss = Callable[[list[Tensor], Tensor], Tensor]


class Stop(HashtaggerError):
    """The run stops, and rank 0 says why (Ctrl-C; its own error); the other ranks leave without a word."""


class StoppedByRankZero(Stop):
    """Rank 0 failed where the other ranks wait for it."""


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1
    device: str = "cpu"  # where collectives' tensors live: NCCL needs them on the GPU

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This rank's contiguous part of n items: sizes differ by at most one, in rank order."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any: Ctrl-C on one rank stops all at the same step."""
        if self.world == 1:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def batch_mean(self, local_mean: float, count: int, total: int) -> float:
        """The global batch's mean from each rank's mean over its `count` of the `total` items."""
        if self.world == 1:
            return local_mean
        t = torch.tensor([local_mean * count], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item() / total

    def gather(self, value: T) -> list[T]:
        """Every rank's value, in rank order, on every rank."""
        if self.world == 1:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def leader_first(self, work: Callable[[], T]) -> T:
        """`work` on rank 0, then on the others (rank 0 fills the feature cache, the others read it). A failure
        on rank 0 stops the others with its message instead of leaving them at the barrier."""
        if self.world == 1:
            return work()
        failure: list[str | None] = [None]
        if self.leader:
            try:
                result = work()
            except BaseException as e:
                failure[0] = str(e) if isinstance(e, HashtaggerError) else f"rank 0 failed: {type(e).__name__}"
                dist.broadcast_object_list(failure, src=0)
                raise
            dist.broadcast_object_list(failure, src=0)
            return result
        dist.broadcast_object_list(failure, src=0)
        if failure[0] is not None:
            raise StoppedByRankZero(failure[0])
        return work()

    def trainable(self, model: nn.Module, loss: Callable[[nn.Module, list[Tensor], Tensor], Tensor]) -> Loss:
        """`loss(model, inputs, labels)` as a callable whose backward averages gradients over the ranks."""
        if self.world == 1:
            return lambda inputs, labels: loss(model, inputs, labels)
        # DDP hooks its module's forward, so the whole loss (AMNN's decoder loss too) goes through one.
        return nn.parallel.DistributedDataParallel(_LossOf(model, loss), static_graph=True)


class _LossOf(nn.Module):
    def __init__(self, model: nn.Module, loss: Callable):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, inputs: list[Tensor], labels: Tensor) -> Tensor:
        return self.loss(self.model, inputs, labels)


def launched() -> bool:
    """Started by torchrun (or anything that sets its variables)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextmanager
def process_group(device: str):
    """The group torchrun describes: gloo on the CPU, NCCL on CUDA with each rank on its own GPU (LOCAL_RANK)."""
    if not launched():
        yield Group(device=device)
        return
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    group = Group(dist.get_rank(), dist.get_world_size(), device)
    try:
        yield group
        # Every rank past its last collective before the group goes: gloo's threads free a finished collective's
        # tensors under the GIL, and the group's destructor joins them holding it (seen: a rank hung at exit).
        dist.barrier()
    except Stop:
        if group.leader:
            raise
        # The others succeed: torchrun ends every rank once one fails, and could cut rank 0 short mid-save.
        raise SystemExit(0) from None
    finally:
        dist.destroy_process_group()


def launch(nproc: int, argv: Sequence[str]) -> int:
    """`hashtagger train --nproc N`: torchrun on this machine running `python -m hashtagger` with `argv`;
    returns the exit status (the ranks print their own errors, rank 0 alone)."""
    if launched():
        raise DataError("--nproc starts torchrun itself; under torchrun, leave it out")
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # torchrun's agent logs a report per failed rank; the ranks have said what went wrong in one line.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    # torchrun would give each rank one thread, with a warning; the ranks share this machine's cores instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // nproc)))
    try:
        run(parse_args(["--standalone", "--nproc-per-node", str(nproc), "-m", "hashtagger", *argv]))
    except ChildFailedError as e:
        # A rank that ended itself has said why; torchrun then kills the others (a negative exit code: the signal).
        codes = sorted((f.exitcode < 0, rank, f.exitcode) for rank, f in e.failures.items())
        killed, rank, code = codes[0]
        if killed:
            print(f"error: training process {rank} was killed by signal {-code}", file=sys.stderr)
            return 1
        return code
    except SignalException:
        return 130
    return 0
