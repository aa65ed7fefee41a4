"""Data-parallel training on torch.distributed: ``torchrun --nproc_per_node N -m saecore train ...``.

The trainer uses these pieces itself. A caller building its own ``SAETrainer`` under
torchrun joins the process group with :func:`init_from_env` and passes the context it
returns as ``SAETrainer(..., distributed=context)``; the runner does both for you. See
docs/distributed.md.
"""

from saecore.distributed.context import DistributedContext, current_context, init_from_env, local_device, shutdown
from saecore.distributed.data_parallel import TrainingForward
from saecore.distributed.sharding import SHARD_METHOD, ShardingMode

__all__ = [
    "SHARD_METHOD",
    "DistributedContext",
    "ShardingMode",
    "TrainingForward",
    "current_context",
    "init_from_env",
    "local_device",
    "shutdown",
]
