"""The on-disk activation cache: writer, streaming reader, bounded shuffling, exact resume, errors."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saecore.errors import ConfigError, SAEFileError
from saecore.registry import get_registry
from saecore.sources.cached import CachedActivationsWriter, CachedSource, CachedSourceConfig

D_IN = 8
SHARD = 100
N_ROWS = 1050  # ten full shards and one of 50 rows


def rows_with_ids(n: int, start: int = 0) -> torch.Tensor:
    """Rows whose first column is a unique id, so every served row can be traced back."""
    rows = torch.randn(n, D_IN, generator=torch.Generator().manual_seed(start))
    rows[:, 0] = torch.arange(start, start + n, dtype=torch.float32)
    return rows


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    path = tmp_path / "cache"
    with CachedActivationsWriter(path, D_IN, shard_size_tokens=SHARD, metadata={"model_name": "tiny"}) as writer:
        start = 0
        for size in (130, 7, 300, 1, 612):  # uneven chunks that straddle shard boundaries
            writer.append(rows_with_ids(size, start))
            start += size
    return path


def all_rows() -> torch.Tensor:
    start, parts = 0, []
    for size in (130, 7, 300, 1, 612):
        parts.append(rows_with_ids(size, start))
        start += size
    return torch.cat(parts)


def ids(batch: torch.Tensor) -> list[int]:
    return batch[:, 0].long().tolist()


def test_registered_as_cached() -> None:
    entry = get_registry().source("cached")
    assert entry.source_class is CachedSource and entry.config_class is CachedSourceConfig


def test_writer_writes_shards_and_index(cache: Path) -> None:
    info = json.loads((cache / "cache_info.json").read_text())
    assert info["d_in"] == D_IN and info["dtype"] == "float32" and info["n_tokens"] == N_ROWS
    assert [s["n_tokens"] for s in info["shards"]] == [SHARD] * 10 + [50]
    assert info["metadata"] == {"model_name": "tiny"}
    stored = torch.cat([load_file(str(cache / s["file"]))["activations"] for s in info["shards"]])
    assert torch.equal(stored, all_rows())
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []  # no temporary files left


def test_one_epoch_serves_every_row_exactly_once_unchanged(cache: Path) -> None:
    source = CachedSource(CachedSourceConfig(path=cache, buffer_shards=3), seed=1)
    served = torch.cat([source.next_batch(50) for _ in range(N_ROWS // 50)])
    assert served.dtype == torch.float32 and served.shape == (N_ROWS, D_IN)
    assert sorted(ids(served)) == list(range(N_ROWS))
    expected = all_rows()
    assert torch.equal(served, expected[served[:, 0].long()])
    assert ids(served) != list(range(N_ROWS))  # shuffled


def test_rows_mix_across_the_shards_of_a_buffer(cache: Path) -> None:
    source = CachedSource(CachedSourceConfig(path=cache, buffer_shards=2), seed=1)
    first = ids(source.next_batch(40))
    assert len({row // SHARD for row in first}) == 2


def test_every_epoch_reshuffles_and_warns_only_when_rows_repeat(cache: Path) -> None:
    source = CachedSource(CachedSourceConfig(path=cache), seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = ids(torch.cat([source.next_batch(75) for _ in range(N_ROWS // 75)]))
    with pytest.warns(UserWarning, match="another epoch"):
        second = ids(torch.cat([source.next_batch(75) for _ in range(N_ROWS // 75)]))
    assert sorted(first) == sorted(second) == list(range(N_ROWS))
    assert first != second


def test_unshuffled_reads_in_written_order(cache: Path) -> None:
    source = CachedSource(CachedSourceConfig(path=cache, shuffle=False))
    assert ids(torch.cat([source.next_batch(210) for _ in range(5)])) == list(range(N_ROWS))


def test_buffer_never_holds_more_than_buffer_shards(cache: Path) -> None:
    source = CachedSource(CachedSourceConfig(path=cache, buffer_shards=2), seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2 * N_ROWS // 33):
            source.next_batch(33)
            assert source.buffered_rows <= 2 * SHARD
    assert source.buffer_capacity_rows == 2 * SHARD
    assert 0 < source.peak_buffered_rows <= 2 * SHARD


def test_resume_continues_with_identical_batches_across_groups_and_epochs(cache: Path) -> None:
    cfg = CachedSourceConfig(path=cache, buffer_shards=2)
    source = CachedSource(cfg, seed=4)
    for _ in range(5):
        source.next_batch(64)
    state = source.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [source.next_batch(64) for _ in range(20)]  # crosses groups and the epoch end
        resumed = CachedSource(cfg, seed=4)
        resumed.load_state_dict(json.loads(json.dumps(state)))  # the state is plain JSON-able values
        for batch in expected:
            assert torch.equal(resumed.next_batch(64), batch)


def test_resume_with_another_seed_is_refused(cache: Path) -> None:
    state = CachedSource(CachedSourceConfig(path=cache), seed=4).state_dict()
    with pytest.raises(ConfigError, match="seed"):
        CachedSource(CachedSourceConfig(path=cache), seed=5).load_state_dict(state)


def test_batch_larger_than_the_buffer_names_the_field(cache: Path) -> None:
    source = CachedSource(CachedSourceConfig(path=cache, buffer_shards=2))
    source.check_batch_size(2 * SHARD)
    with pytest.raises(ConfigError, match=r"train_batch_size_tokens=201 .*buffer_shards"):
        source.check_batch_size(2 * SHARD + 1)


def test_half_precision_cache_is_served_as_float32(tmp_path: Path) -> None:
    rows = rows_with_ids(30)
    with CachedActivationsWriter(tmp_path / "half", D_IN, dtype="float16", shard_size_tokens=16) as writer:
        writer.append(rows)
    served = CachedSource(CachedSourceConfig(path=tmp_path / "half", shuffle=False)).next_batch(30)
    assert served.dtype == torch.float32
    assert torch.equal(served, rows.half().float())


def test_metadata_comes_from_the_writer(cache: Path) -> None:
    assert CachedSource(CachedSourceConfig(path=cache)).sae_metadata() == {"model_name": "tiny"}


def test_writer_refuses_to_overwrite_unless_asked(cache: Path) -> None:
    with pytest.raises(SAEFileError, match="overwrite=True"):
        CachedActivationsWriter(cache, D_IN)
    with CachedActivationsWriter(cache, D_IN, shard_size_tokens=SHARD, overwrite=True) as writer:
        writer.append(rows_with_ids(10))
    assert sorted(p.name for p in cache.iterdir()) == ["cache_info.json", "shard_00000.safetensors"]


def test_writer_rejects_wrong_width_and_unknown_dtype(tmp_path: Path) -> None:
    writer = CachedActivationsWriter(tmp_path / "c", D_IN)
    with pytest.raises(ConfigError, match=r"d_in=8"):
        writer.append(torch.zeros(4, D_IN + 1))
    with pytest.raises(ConfigError, match="dtype"):
        CachedActivationsWriter(tmp_path / "d", D_IN, dtype="int8")


def test_missing_index_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SAEFileError, match=r"cache_info\.json"):
        CachedSource(CachedSourceConfig(path=tmp_path))


def test_missing_shard_names_the_file(cache: Path) -> None:
    (cache / "shard_00003.safetensors").unlink()
    with pytest.raises(SAEFileError, match=r"shard_00003\.safetensors"):
        CachedSource(CachedSourceConfig(path=cache))


def test_truncated_shard_names_the_file(cache: Path) -> None:
    shard = cache / "shard_00004.safetensors"
    shard.write_bytes(shard.read_bytes()[:-40])
    with pytest.raises(SAEFileError, match=r"shard_00004\.safetensors"):
        source = CachedSource(CachedSourceConfig(path=cache, shuffle=False))
        source.next_batch(N_ROWS)


def test_garbage_shard_names_the_file(cache: Path) -> None:
    (cache / "shard_00001.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SAEFileError, match=r"shard_00001\.safetensors"):
        CachedSource(CachedSourceConfig(path=cache))


def test_shard_that_disagrees_with_the_index_names_the_file(cache: Path) -> None:
    info = json.loads((cache / "cache_info.json").read_text())
    info["shards"][2]["n_tokens"] = 99
    (cache / "cache_info.json").write_text(json.dumps(info))
    with pytest.raises(SAEFileError, match=r"shard_00002.safetensors.*\[99, 8\]"):
        CachedSource(CachedSourceConfig(path=cache))
