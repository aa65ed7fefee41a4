"""Which rank this process is, of how many, and the few collectives training needs.

One object answers every "am I distributed?" question, so the trainer has no
``dist.is_initialized()`` checks scattered through it: in a single process each
collective hands its input back untouched and costs nothing, and the training loop
reads the same either way.

The process group itself is torch.distributed's, joined through ``env://`` from the
variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``), so every torchrun rendezvous setup (one node, several nodes, c10d or
static) works unchanged. The backend follows the device: NCCL for CUDA, gloo otherwise.
The group's timeout is what turns a dead or stalled peer into an error instead of a hang.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from saecore.errors import ConfigError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

# torch modules whose functions take ``group=group.WORLD`` as a default, evaluated when the
# module is imported. Imported after the group is joined, they keep the default group alive
# for the rest of the interpreter: ``destroy_process_group`` then frees nothing, and gloo's
# worker threads live on into interpreter shutdown, where one that drops its last tensor
# must take the GIL and the process aborts ("terminate called without an active
# exception"). torch.optim.Adam imports the first lazily, through torch._dynamo; the others
# are the rest of torch's modules with such a default (FSDP's grad scaler, ZeRO).
MODULES_BINDING_THE_DEFAULT_GROUP = (
    "torch.distributed.nn.functional",
    "torch.distributed.fsdp.sharded_grad_scaler",
    "torch.distributed.optim.zero_redundancy_optimizer",
)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, saves and writes checkpoints."""
        return self.rank == 0

    def device_for(self, device: str | torch.device) -> torch.device:
        """``cuda`` means this rank's own GPU (``cuda:LOCAL_RANK``) in a multi-GPU job."""
        resolved = torch.device(device)
        if resolved.type == "cuda" and resolved.index is None and self.is_distributed:
            return torch.device("cuda", self.local_rank)
        return resolved

    @property
    def collective_device(self) -> torch.device:
        """Where small bookkeeping tensors must live for the backend to reduce them."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    # -- collectives (identity in a single process) -----------------------------------------
    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks in place and return it."""
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of a floating ``tensor`` over ranks (a new tensor)."""
        if not self.is_distributed:
            return tensor
        return self.sum_(tensor.clone()) / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is True on any rank."""
        if not self.is_distributed:
            return flag
        value = torch.tensor([int(flag)], device=self.collective_device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def min_int(self, value: int) -> int:
        """The smallest ``value`` over ranks."""
        if not self.is_distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.long, device=self.collective_device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return int(tensor.item())

    def broadcast_from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (pickled; for small or infrequent objects)."""
        if not self.is_distributed:
            return value
        holder = [value if self.is_main else None]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def gather_to_main(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` in rank order on rank 0; None elsewhere."""
        if not self.is_distributed:
            return [value]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def all_gather_objects(self, value: Any) -> list[Any]:
        """Every rank's ``value`` in rank order, on every rank (pickled; for small objects)."""
        if not self.is_distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def all_gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``[n, ...]`` rows, concatenated in rank order, on every rank."""
        if not self.is_distributed:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def barrier(self) -> None:
        if self.is_distributed:
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()


def current_context() -> DistributedContext:
    """The context of the process group already joined, or a single process if there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=str(dist.get_backend()),
    )


def local_device(device: str) -> torch.device:
    """``device`` for this process, known from the launcher's variables before any group is joined.

    Under torchrun ``cuda`` becomes ``cuda:LOCAL_RANK``, so code that builds a source or
    model before the runner starts puts it on this rank's own GPU.
    """
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None and launched_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return resolved


def launched_distributed() -> bool:
    """Whether torchrun (or an equivalent launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str, timeout_s: float) -> tuple[DistributedContext, bool]:
    """Join the process group the launcher describes; return the context and whether we created it.

    Nothing happens in a plain single process, or when the caller has already joined a
    group (then that group, and its timeout, are used as they are).
    """
    if dist.is_available() and dist.is_initialized():
        return current_context(), False
    if not launched_distributed():
        return DistributedContext(), False
    if not dist.is_available():
        raise ConfigError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} asks for a distributed run, but this torch build has no "
            "torch.distributed support; install a torch build with it or run a single process"
        )
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} asks for a distributed run, but {', '.join(missing)} "
            "is not set; launch with torchrun (python -m torch.distributed.run), which sets them all"
        )
    for module in MODULES_BINDING_THE_DEFAULT_GROUP:  # while their defaults can still bind only None
        importlib.import_module(module)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.device(device).type == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend="nccl" if use_cuda else "gloo",
        init_method="env://",
        timeout=timedelta(seconds=timeout_s),
    )
    return current_context(), True


def shutdown(owned: bool, *, together: bool = False) -> None:
    """Leave the process group if we created it (also after a failure: a clean exit, not an abort).

    ``together``: every rank is known to be alive and leaving (a finished or agreed-stopped
    run), so ranks first wait for each other. Otherwise a rank that tears down first can
    close connections a peer's gloo thread is still using, and the peer aborts.
    """
    if owned and dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()
