"""What a data-parallel job over a self-sharding source trains on, reproduced in one process.

A W-rank job whose source shards itself (``shard_for_rank``) trains each step on the
rows of rank 0's shard, then rank 1's, and so on: DDP's gradient average over equal
shards is the gradient of that concatenation. :class:`RanksInOneProcess` serves exactly
those batches from W copies of the source, so a source's sharding can be tested against
a single-process run without starting any process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from saecore.sources.base import ActivationSource


class RanksInOneProcess(ActivationSource):
    """Each batch is the concatenation of what ranks ``0 … W−1`` would each draw.

    ``make_source`` builds one copy of the source; each copy is sharded for its rank.
    """

    def __init__(self, make_source: Callable[[], ActivationSource], world_size: int) -> None:
        self.ranks = [make_source() for _ in range(world_size)]
        first = self.ranks[0]
        super().__init__(first.cfg, seed=first.seed, device=str(first.device))
        for rank, source in enumerate(self.ranks):
            if not source.shard_for_rank(rank, world_size):
                raise ValueError(f"{type(source).__name__} does not shard itself, so no rank reads its own share")

    @property
    def d_in(self) -> int:
        return self.ranks[0].d_in

    def next_batch(self, batch_size: int) -> torch.Tensor:
        return torch.cat([source.next_batch(batch_size // len(self.ranks)) for source in self.ranks])

    def sae_metadata(self) -> dict[str, Any]:
        return self.ranks[0].sae_metadata()

    def close(self) -> None:
        for source in self.ranks:
            source.close()
