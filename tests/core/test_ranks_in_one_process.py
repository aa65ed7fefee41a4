"""saecore.testing.RanksInOneProcess: the batches of a data-parallel job over a self-sharding source."""

from __future__ import annotations

import pytest
import torch

from saecore.sources.base import ActivationSource, SourceConfig
from saecore.testing import RanksInOneProcess

ROWS = torch.arange(48, dtype=torch.float32).reshape(12, 4)


class RowSource(ActivationSource):
    """Serves ``ROWS`` in order; sharded, rank r serves rows r, r+W, ..."""

    def __init__(self, shards: bool = True) -> None:
        super().__init__(SourceConfig())
        self.shards = shards
        self.rows = ROWS
        self.position = 0

    @property
    def d_in(self) -> int:
        return 4

    def next_batch(self, batch_size: int) -> torch.Tensor:
        batch = self.rows[self.position : self.position + batch_size]
        self.position += batch_size
        return batch

    def shard_for_rank(self, rank: int, world_size: int) -> bool:
        if self.shards:
            self.rows = ROWS[rank::world_size]
        return self.shards


def test_each_batch_is_every_ranks_share_in_rank_order() -> None:
    one_process = RanksInOneProcess(RowSource, 2)

    assert one_process.d_in == 4
    assert torch.equal(one_process.next_batch(4), ROWS[[0, 2, 1, 3]])
    assert torch.equal(one_process.next_batch(4), ROWS[[4, 6, 5, 7]])


def test_a_source_that_does_not_shard_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="RowSource does not shard itself"):
        RanksInOneProcess(lambda: RowSource(shards=False), 2)
