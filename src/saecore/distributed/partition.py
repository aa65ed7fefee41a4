"""The batch handout of a sweep whose SAEs are partitioned over the ranks.

With ``sae_placement="partition"`` each SAE lives on one rank and trains there as in a
single process, on whole global batches. So every rank needs every global batch:

* a source that shards itself (``shard_for_rank``) serves each rank ``B/W`` rows of its
  own share, and the ranks all-gather them (rank 0's rows first, as
  ``SourceShardedBatches.global_batch`` does), so the source work is divided by W;
* any other source is drawn whole on every rank (copies built with the same seed serve
  the same stream), with nothing to gather.

Every rank draws the same batches in the same order (the sweep's draw schedule is shared
and each rank tees its draws to its own SAEs), so the all-gathers line up.

A checkpoint must hold every rank's source position in each SAE's folder, since each
rank writes only its own SAEs: the positions are all-gathered once per checkpoint step,
however many SAEs a rank writes, because ranks own different numbers of SAEs and a
collective per SAE would not line up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from saecore.distributed.context import DistributedContext
from saecore.distributed.sharding import RANK_STATES_KEY, ShardingMode, WholeBatches, choose_sharding
from saecore.errors import ConfigError
from saecore.sources.base import ActivationSource

PARTITION_WORLD_SIZE_KEY = "partition_world_size"


class GlobalBatchesOnEveryRank(WholeBatches):
    """Whole global batches on every rank: gathered from self-sharded sources, else drawn whole.

    ``context`` is the job's; the trainers reading this handout are single-process
    ones, so their own checkpoint code writes this object's states as they are.
    """

    def __init__(self, source: ActivationSource, context: DistributedContext, *, sharded: bool) -> None:
        super().__init__(source, context)
        self.sharded = sharded
        self.mode = "partition-source" if sharded else "partition-whole"
        self._n_draws = 0
        self._gathered_at: int | None = None
        self._gathered_states: list[dict[str, Any]] = []

    def local_batch(self, global_size: int) -> torch.Tensor:
        """The whole global batch: an SAE that lives on one rank trains on all of it."""
        self._n_draws += 1
        if not self.sharded:
            return self.source.next_batch(global_size)
        own_rows = self.source.next_batch(global_size // self.context.world_size)
        return self.context.all_gather_rows(own_rows.contiguous())

    def global_batch(self, global_size: int) -> torch.Tensor:
        return self.local_batch(global_size)

    def source_metrics(self, sae: Any, scaling_factor: float | None) -> dict[str, float]:
        """The owner rank's source alone evaluates (the LLM source's eval prompts are the same on every rank)."""
        return self.source.evaluate_sae(sae, scaling_factor)

    def source_state_to_save(self) -> dict[str, Any]:
        """One position for every rank when sources shard themselves, else the single-process state.

        Collective when sharded, once per draw position: the first SAE a rank checkpoints
        after a draw gathers; the rank's other SAEs at that step reuse the result.
        """
        if not self.sharded:
            return self.source.state_dict()
        if self._gathered_at != self._n_draws:
            self._gathered_states = self.context.all_gather_objects(self.source.state_dict())
            self._gathered_at = self._n_draws
        return {RANK_STATES_KEY: list(self._gathered_states), PARTITION_WORLD_SIZE_KEY: self.context.world_size}

    def restore_source_state(self, state: dict[str, Any], written_by: Mapping[str, Any] | None) -> None:
        self._gathered_at = None
        world_size = self.context.world_size
        written_per_rank = RANK_STATES_KEY in state
        if not self.sharded and not written_per_rank:
            self.source.load_state_dict(state)
            return
        if self.sharded and state.get(PARTITION_WORLD_SIZE_KEY) == world_size:
            self.source.load_state_dict(state[RANK_STATES_KEY][self.context.rank])
            return
        if PARTITION_WORLD_SIZE_KEY in state:
            wrote = f"a {state[PARTITION_WORLD_SIZE_KEY]}-rank partition sweep whose sources shard themselves"
        elif written_per_rank:
            wrote = f"a {len(state[RANK_STATES_KEY])}-rank data-parallel run whose sources shard themselves"
        else:
            wrote = "a run with one source position for all ranks"
        needs = (
            f"a {world_size}-rank sae_placement='partition' sweep whose sources shard themselves"
            if self.sharded
            else "a run with one source position for all ranks (one process, or a source that does not shard itself)"
        )
        raise ConfigError(
            f"this {world_size}-rank sae_placement='partition' sweep resumes only from a checkpoint written by "
            f"{needs}, but the checkpoint was written by {wrote}; resume with the setup that wrote it"
        )


def partition_handout(
    source: ActivationSource, context: DistributedContext, mode: ShardingMode, global_batch_size: int
) -> WholeBatches:
    """The handout for a partitioned sweep; one process gets the plain single-process handout.

    ``mode`` is ``distributed_sharding``: whether the source shards itself is negotiated
    exactly as for data parallelism (``choose_sharding``), and then decides between
    gathering and drawing whole batches.
    """
    chosen = choose_sharding(source, context, mode, global_batch_size)
    if not context.is_distributed:
        return chosen
    return GlobalBatchesOnEveryRank(source, context, sharded=chosen.mode == "source")
