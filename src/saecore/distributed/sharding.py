"""How each rank gets its part of every global batch.

``train_batch_size_tokens`` is the *global* batch B: one optimizer step consumes B
activations whatever the world size W, so the step count, LR schedule, checkpoint steps
and ``training_tokens`` mean what they mean in a single process. Rank r trains on B/W
of them. There are two ways to hand them out:

``slice``
    Every rank draws the whole global batch from its own copy of the source (copies
    built with the same seed serve the same stream) and keeps rows ``[r·B/W, (r+1)·B/W)``.
    The ranks' rows together are exactly the single-process batch, so a W-rank run makes
    the single-process run's updates (up to float rounding), and every rank's source is
    in the same state: a checkpoint holds one source state, which resumes at any world
    size that divides B, a single process included. The price is that each rank produces
    W times the rows it trains on: right for cheap sources (synthetic, in-memory), wasteful
    for a language model.

``source``
    The source shards itself. A source that can offers
    ``shard_for_rank(rank, world_size) -> bool``; it is called once, before the first
    batch and before any resume, and returning True promises that from then on the
    source serves only this rank's disjoint share of its stream (a cache: its own
    shards; a language model: its own share of the dataset). Rank r then asks for B/W
    rows, and nothing is produced twice. The global batches differ from a single-process
    run's, and each rank's position is its own: a checkpoint stores one source state
    (and one RNG state) per rank and resumes only at the same world size.

``auto`` (the default) uses the source's own sharding when every rank's source accepts
it, and slicing otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch

from saecore.distributed.context import DistributedContext
from saecore.errors import ConfigError
from saecore.sources.base import ActivationSource

ShardingMode = Literal["auto", "slice", "source"]
SHARD_METHOD = "shard_for_rank"
RANK_STATES_KEY = "rank_states"


class WholeBatches:
    """A single process: the source's batches, as they come."""

    mode = "single"
    per_rank_state = False

    def __init__(self, source: ActivationSource, context: DistributedContext) -> None:
        self.source = source
        self.context = context

    @property
    def device(self) -> torch.device:
        return self.source.device

    def local_batch(self, global_size: int) -> torch.Tensor:
        """The rows this rank trains on this step."""
        return self.source.next_batch(global_size)

    def global_batch(self, global_size: int) -> torch.Tensor:
        """The whole global batch, the same on every rank (for evaluations and the input scale)."""
        return self.source.next_batch(global_size)

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """``global_batch``: lets this object stand in for a source where whole batches are wanted."""
        return self.global_batch(batch_size)

    def source_metrics(self, sae: Any, scaling_factor: float | None) -> dict[str, float]:
        return self.source.evaluate_sae(sae, scaling_factor)

    def source_state_to_save(self) -> dict[str, Any] | None:
        """The source state rank 0 writes (collective for per-rank states; None on other ranks)."""
        return self.source.state_dict() if self.context.is_main else None

    def restore_source_state(self, state: dict[str, Any], written_by: Mapping[str, Any] | None) -> None:
        """Load a checkpoint's source state; ``written_by`` is its ``distributed`` note (None: one process)."""
        if written_by is not None and written_by.get("sharding") == "source":
            raise ConfigError(
                f"this checkpoint was written by a {written_by['world_size']}-rank run whose source sharded itself, "
                f"so it holds one source position per rank; resume it with {written_by['world_size']} ranks "
                "(torchrun --nproc_per_node ...) and the same source"
            )
        self.source.load_state_dict(state)


class SlicedBatches(WholeBatches):
    """Every rank draws the global batch and keeps its own contiguous block of rows."""

    mode = "slice"

    def __init__(self, source: ActivationSource, context: DistributedContext) -> None:
        super().__init__(source, context)
        self.rank = context.rank
        self.world_size = context.world_size

    def local_batch(self, global_size: int) -> torch.Tensor:
        rows = global_size // self.world_size
        return self.source.next_batch(global_size)[self.rank * rows:(self.rank + 1) * rows]


class SourceShardedBatches(WholeBatches):
    """Every rank's source serves its own disjoint share; global batches are gathered."""

    mode = "source"
    per_rank_state = True

    def local_batch(self, global_size: int) -> torch.Tensor:
        return self.source.next_batch(global_size // self.context.world_size)

    def global_batch(self, global_size: int) -> torch.Tensor:
        return self.context.all_gather_rows(self.local_batch(global_size).contiguous())

    def source_metrics(self, sae: Any, scaling_factor: float | None) -> dict[str, float]:
        """Each rank's metrics on its own share, averaged over ranks (every rank gets the same dict)."""
        metrics = self.source.evaluate_sae(sae, scaling_factor)
        if not metrics:
            return metrics
        names = sorted(metrics)
        values = torch.tensor([float(metrics[name]) for name in names], dtype=torch.float64,
                              device=self.context.collective_device)
        return dict(zip(names, self.context.mean(values).tolist()))

    def source_state_to_save(self) -> dict[str, Any] | None:
        states = self.context.gather_to_main(self.source.state_dict())
        return None if states is None else {RANK_STATES_KEY: states}

    def restore_source_state(self, state: dict[str, Any], written_by: Mapping[str, Any] | None) -> None:
        world_size = self.context.world_size
        if written_by is None or written_by.get("sharding") != "source" or written_by["world_size"] != world_size:
            wrote = (
                "a single process" if written_by is None
                else f"a {written_by['world_size']}-rank run with {written_by['sharding']!r} sharding"
            )
            raise ConfigError(
                f"this {world_size}-rank run's source shards itself, so it resumes only from a checkpoint written "
                f"by a {world_size}-rank run that did the same (one source position per rank); the checkpoint "
                f"was written by {wrote}. Resume with that run's setup, or set distributed_sharding='slice'"
            )
        self.source.load_state_dict(state[RANK_STATES_KEY][self.context.rank])


def choose_sharding(
    source: ActivationSource, context: DistributedContext, mode: ShardingMode, global_batch_size: int
) -> WholeBatches:
    """The batch handout for this run (see the module docstring); calls ``shard_for_rank`` at most once."""
    if not context.is_distributed:
        return WholeBatches(source, context)
    world_size = context.world_size
    if global_batch_size % world_size:
        raise ConfigError(
            f"train_batch_size_tokens={global_batch_size} is the global batch and must split evenly over the "
            f"{world_size} ranks; use a multiple of {world_size}"
        )
    if mode == "slice":
        return SlicedBatches(source, context)
    accepted = bool(source.shard_for_rank(context.rank, world_size))
    n_accepted = int(context.sum_(torch.tensor([int(accepted)], device=context.collective_device)).item())
    if n_accepted == world_size:
        return SourceShardedBatches(source, context)
    if n_accepted:
        raise ConfigError(
            f"{type(source).__name__}.{SHARD_METHOD}() accepted on {n_accepted} of {world_size} ranks only; "
            "every rank must build the same source so that all of them shard, or none"
        )
    if mode == "source":
        raise ConfigError(
            f"distributed_sharding='source', but {type(source).__name__} cannot shard itself (it has no "
            f"{SHARD_METHOD}() returning True); use distributed_sharding='slice' or 'auto' (every rank then "
            "draws each global batch and keeps its own rows)"
        )
    return SlicedBatches(source, context)
