"""The pieces that need no second process: the single-process context, devices, slicing, and config errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from saecore.distributed.context import DistributedContext, init_from_env, local_device
from saecore.distributed.sharding import SlicedBatches, SourceShardedBatches, WholeBatches, choose_sharding
from saecore.errors import ConfigError
from saecore.sources.synthetic import SyntheticSource, SyntheticSourceConfig
from saecore.training import RankFailedError, TrainerConfig

SOURCE_CONFIG = SyntheticSourceConfig(d_in=8, n_features=12, avg_active_features=2.0)


@dataclass(frozen=True)
class MirroredPeers(DistributedContext):
    """A stand-in job whose other ranks always hold what this rank holds (no process group needed)."""

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.mul_(self.world_size)


class ShardableSource(SyntheticSource):
    def shard_for_rank(self, rank: int, world_size: int) -> bool:
        self.sharded_as = (rank, world_size)
        return True


def test_a_single_process_context_hands_every_value_back() -> None:
    context = DistributedContext()
    tensor = torch.arange(4.0)
    assert not context.is_distributed and context.is_main
    assert context.sum_(tensor) is tensor and context.mean(tensor) is tensor
    assert context.all_gather_rows(tensor) is tensor
    assert context.any(True) and not context.any(False)
    assert context.min_int(7) == 7
    assert context.broadcast_from_main({"a": 1}) == {"a": 1}
    assert context.gather_to_main("state") == ["state"]
    context.barrier()


def test_cuda_means_the_local_gpu_only_in_a_multi_process_job() -> None:
    job = DistributedContext(rank=3, world_size=4, local_rank=1, backend="nccl")
    assert job.device_for("cuda") == torch.device("cuda", 1)
    assert job.device_for("cuda:0") == torch.device("cuda", 0)
    assert job.device_for("cpu") == torch.device("cpu")
    assert DistributedContext().device_for("cuda") == torch.device("cuda")


def test_before_joining_a_group_cuda_means_the_launchers_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_device("cuda") == torch.device("cuda", 1)
    assert local_device("cpu") == torch.device("cpu")
    monkeypatch.delenv("WORLD_SIZE")
    assert local_device("cuda") == torch.device("cuda")


def test_each_rank_keeps_its_own_block_of_the_global_batch() -> None:
    twin = SyntheticSource(SOURCE_CONFIG, seed=5)
    expected = [twin.next_batch(12), twin.next_batch(12)]
    rank1 = SlicedBatches(SyntheticSource(SOURCE_CONFIG, seed=5), DistributedContext(rank=1, world_size=3))
    assert torch.equal(rank1.local_batch(12), expected[0][4:8])
    assert torch.equal(rank1.global_batch(12), expected[1])


def test_a_single_process_is_never_sharded() -> None:
    source = ShardableSource(SOURCE_CONFIG)
    assert type(choose_sharding(source, DistributedContext(), "source", 32)) is WholeBatches
    assert not hasattr(source, "sharded_as")


def test_the_global_batch_must_split_evenly_over_the_ranks() -> None:
    with pytest.raises(ConfigError, match=r"train_batch_size_tokens=32 .* 3 ranks; use a multiple of 3"):
        choose_sharding(SyntheticSource(SOURCE_CONFIG), DistributedContext(world_size=3), "auto", 32)


def test_auto_uses_a_source_that_shards_itself_and_slices_one_that_cannot() -> None:
    context = MirroredPeers(rank=1, world_size=2)
    shardable = ShardableSource(SOURCE_CONFIG)
    assert type(choose_sharding(shardable, context, "auto", 32)) is SourceShardedBatches
    assert shardable.sharded_as == (1, 2)
    assert type(choose_sharding(SyntheticSource(SOURCE_CONFIG), context, "auto", 32)) is SlicedBatches
    assert type(choose_sharding(ShardableSource(SOURCE_CONFIG), context, "slice", 32)) is SlicedBatches


def test_source_sharding_on_a_source_that_cannot_shard_is_an_error() -> None:
    with pytest.raises(ConfigError, match="SyntheticSource cannot shard itself"):
        choose_sharding(SyntheticSource(SOURCE_CONFIG), MirroredPeers(world_size=2), "source", 32)


def test_a_launch_without_the_rendezvous_variables_says_which_are_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="RANK, MASTER_ADDR, MASTER_PORT is not set; launch with torchrun"):
        init_from_env("cpu", 5.0)


def test_no_launcher_means_a_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_from_env("cpu", 5.0) == (DistributedContext(), False)


def test_distributed_settings_are_validated() -> None:
    assert TrainerConfig().distributed_sharding == "auto"
    with pytest.raises(ValueError, match="distributed_sharding"):
        TrainerConfig(distributed_sharding="rows")
    with pytest.raises(ValueError, match="distributed_timeout_s"):
        TrainerConfig(distributed_timeout_s=0)


def test_a_failed_rank_says_where_to_resume() -> None:
    error = RankFailedError(0, 2, 17, 30.0, None, "Connection reset by peer")
    assert str(error).startswith("rank 0 of 2 failed after step 17: Connection reset by peer.")
    assert "distributed_timeout_s=30 s" in str(error) and "no checkpoint was written yet" in str(error)
