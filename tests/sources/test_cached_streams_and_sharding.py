"""The activation cache's streams (several column blocks per row) and its data-parallel sharding."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import pytest
import torch

from saecore.errors import ConfigError, SAEFileError
from saecore.sources.cached import CachedActivationsWriter, CachedSource, CachedSourceConfig, StreamInfo
from saecore.sources.synthetic import SyntheticSource, SyntheticSourceConfig

D_IN = 6
SHARD = 40
N_ROWS = 290  # seven full shards and one of 10 rows
STREAMS = (StreamInfo("blocks.0.hook_resid_post", 4, {"hook_name": "blocks.0.hook_resid_post", "model_name": "m"}),
           StreamInfo("blocks.1.hook_mlp_out", 2, {"hook_name": "blocks.1.hook_mlp_out", "model_name": "m"}))


def write_cache(path: Path, streams: tuple[StreamInfo, ...] = ()) -> Path:
    """Rows whose first column is their index, so every served row can be traced back."""
    rows = torch.randn(N_ROWS, D_IN, generator=torch.Generator().manual_seed(0))
    rows[:, 0] = torch.arange(N_ROWS, dtype=torch.float32)
    with CachedActivationsWriter(path, D_IN, shard_size_tokens=SHARD, metadata={"model_name": "m"},
                                 streams=streams) as writer:
        writer.append(rows)
    return path


def ids(batch: torch.Tensor) -> list[int]:
    return batch[:, 0].long().tolist()


def sharded(path: Path, rank: int, world_size: int = 2, **settings: object) -> CachedSource:
    source = CachedSource(CachedSourceConfig(path=path, **settings), seed=3)
    assert source.shard_for_rank(rank, world_size)
    return source


def test_the_streams_and_their_metadata_are_read_back(tmp_path: Path) -> None:
    source = CachedSource(CachedSourceConfig(path=write_cache(tmp_path / "c", STREAMS)))
    assert source.streams() == {"blocks.0.hook_resid_post": 4, "blocks.1.hook_mlp_out": 2}
    assert source.stream_metadata("blocks.1.hook_mlp_out") == STREAMS[1].metadata
    assert source.sae_metadata() == {"model_name": "m"}
    with pytest.raises(ConfigError, match=r"stream 'x' is not in the cache .*blocks.0.hook_resid_post, blocks.1"):
        source.stream_metadata("x")


def test_a_cache_without_streams_has_the_default_one(tmp_path: Path) -> None:
    source = CachedSource(CachedSourceConfig(path=write_cache(tmp_path / "c")))
    assert source.streams() == {"activations": D_IN}
    assert "streams" not in json.loads((tmp_path / "c" / "cache_info.json").read_text())


def test_streams_that_do_not_cover_the_row_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"streams: the streams' widths \[4\] add up to 4, not d_in=6"):
        CachedActivationsWriter(tmp_path / "a", D_IN, streams=STREAMS[:1])
    with pytest.raises(ConfigError, match="stream names repeat"):
        CachedActivationsWriter(tmp_path / "b", D_IN, streams=(STREAMS[0], StreamInfo(STREAMS[0].name, 2, {})))
    path = write_cache(tmp_path / "c", STREAMS)
    info = json.loads((path / "cache_info.json").read_text())
    info["streams"][1]["width"] = 3
    (path / "cache_info.json").write_text(json.dumps(info))
    with pytest.raises(SAEFileError, match=r"cache_info.json: 'streams' do not describe the rows: .*add up to 7"):
        CachedSource(CachedSourceConfig(path=path))


def test_the_cache_command_records_a_sources_streams(tmp_path: Path) -> None:
    from saecore.cli.cache_cmd import CacheOptions, cache_activations

    options = CacheOptions(output=str(tmp_path / "c"), training_tokens=64, batch_size_tokens=32, shard_size_tokens=32)
    assert cache_activations("synthetic", {"d_in": 8, "n_features": 16}, options, stream=io.StringIO()) == 64
    original = SyntheticSource(SyntheticSourceConfig(d_in=8, n_features=16))
    cached = CachedSource(CachedSourceConfig(path=tmp_path / "c"))
    assert cached.streams() == original.streams() == {"activations": 8}
    assert cached.stream_metadata("activations") == original.stream_metadata("activations")


@pytest.mark.parametrize("shuffle", [True, False])
def test_two_ranks_read_disjoint_shard_files_that_cover_the_cache(tmp_path: Path, shuffle: bool) -> None:
    path = write_cache(tmp_path / "c")
    served = []
    for rank in range(2):
        source = sharded(path, rank, shuffle=shuffle)
        rows = ids(source.next_batch(source.n_tokens))
        assert {row // SHARD % 2 for row in rows} == {rank}  # shard files rank, rank + 2, ...
        served.append(rows)
    assert [len(rows) for rows in served] == [160, 130]
    assert sorted(served[0] + served[1]) == list(range(N_ROWS))


def test_a_sharded_cache_resumes_exactly_and_only_as_the_same_rank(tmp_path: Path) -> None:
    path = write_cache(tmp_path / "c")
    source = sharded(path, 1, buffer_shards=2)
    for _ in range(3):
        source.next_batch(30)
    state = source.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # crosses the end of rank 1's share
        expected = [source.next_batch(30) for _ in range(6)]
        resumed = sharded(path, 1, buffer_shards=2)
        resumed.load_state_dict(json.loads(json.dumps(state)))
        assert all(torch.equal(resumed.next_batch(30), batch) for batch in expected)
    for other in (sharded(path, 0, buffer_shards=2), CachedSource(CachedSourceConfig(path=path), seed=3)):
        with pytest.raises(ConfigError, match=r"rank 1's of 2 ranks.*same number of ranks"):
            other.load_state_dict(state)


def test_sharding_needs_a_shard_per_rank_and_comes_first(tmp_path: Path) -> None:
    path = write_cache(tmp_path / "c")
    assert not CachedSource(CachedSourceConfig(path=path)).shard_for_rank(0, 9)  # 8 shards: slice the batches
    started = CachedSource(CachedSourceConfig(path=path))
    started.next_batch(5)
    with pytest.raises(ConfigError, match="before the cached source serves its first batch"):
        started.shard_for_rank(0, 2)
