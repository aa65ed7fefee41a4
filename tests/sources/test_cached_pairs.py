"""A cache of (input, target) pairs: recorded target width, pairs kept whole through shuffling and resume."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from saecore.errors import ConfigError, SAEFileError
from saecore.sources.cached import CachedActivationsWriter, CachedSource, CachedSourceConfig, StreamInfo

D_INPUT, D_TARGET, SHARD, N_ROWS = 5, 3, 50, 420


def pair_rows() -> torch.Tensor:
    """``[input | target]`` rows whose target is a fixed function of the input, so a torn pair shows."""
    inputs = torch.randn(N_ROWS, D_INPUT, generator=torch.Generator().manual_seed(0))
    return torch.cat([inputs, 2 * inputs[:, :D_TARGET] + 1], dim=1)


@pytest.fixture
def pair_cache(tmp_path: Path) -> Path:
    path = tmp_path / "pairs"
    rows = pair_rows()
    with CachedActivationsWriter(path, D_INPUT + D_TARGET, shard_size_tokens=SHARD, target_width=D_TARGET) as writer:
        for start in range(0, N_ROWS, 70):
            writer.append(rows[start:start + 70])
    return path


def assert_pairs_whole(batch: torch.Tensor) -> None:
    torch.testing.assert_close(batch[:, D_INPUT:], 2 * batch[:, :D_TARGET] + 1)


def test_the_cache_records_and_serves_the_target_width(pair_cache: Path) -> None:
    assert json.loads((pair_cache / "cache_info.json").read_text())["target_width"] == D_TARGET
    source = CachedSource(CachedSourceConfig(path=pair_cache, shuffle=False))
    assert (source.d_in, source.target_width) == (D_INPUT + D_TARGET, D_TARGET)
    assert torch.equal(source.next_batch(N_ROWS), pair_rows())


def test_shuffled_epochs_and_a_resume_keep_every_pair_whole(pair_cache: Path) -> None:
    cfg = CachedSourceConfig(path=pair_cache, buffer_shards=2)
    source = CachedSource(cfg, seed=3)
    assert_pairs_whole(source.next_batch(130))
    state = source.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the batches run into a second epoch
        expected = [source.next_batch(64) for _ in range(10)]
        resumed = CachedSource(cfg, seed=3)
        resumed.load_state_dict(state)
        for batch in expected:
            assert_pairs_whole(batch)
            assert torch.equal(resumed.next_batch(64), batch)


def test_a_cache_of_inputs_serves_no_target(tmp_path: Path) -> None:
    with CachedActivationsWriter(tmp_path / "inputs", D_INPUT) as writer:
        writer.append(torch.randn(10, D_INPUT))
    assert "target_width" not in json.loads((tmp_path / "inputs" / "cache_info.json").read_text())
    assert CachedSource(CachedSourceConfig(path=tmp_path / "inputs")).target_width == 0


@pytest.mark.parametrize("target_width", [-1, D_INPUT + D_TARGET])
def test_a_target_width_that_leaves_no_input_is_refused(tmp_path: Path, target_width: int) -> None:
    with pytest.raises(ConfigError, match=f"target_width={target_width} must be at least 0 and below d_in=8"):
        CachedActivationsWriter(tmp_path / "bad", D_INPUT + D_TARGET, target_width=target_width)


def test_an_index_with_a_bad_target_width_names_the_file(pair_cache: Path) -> None:
    info_path = pair_cache / "cache_info.json"
    info = json.loads(info_path.read_text())
    info["target_width"] = 8
    info_path.write_text(json.dumps(info))
    with pytest.raises(SAEFileError, match=r"cache_info.json: target_width=8 must be at least 0 and below d_in=8"):
        CachedSource(CachedSourceConfig(path=pair_cache))


def test_a_stream_target_as_wide_as_its_stream_is_refused(tmp_path: Path) -> None:
    streams = [StreamInfo("pair", 5, {}, target_width=5), StreamInfo("plain", 3, {})]
    with pytest.raises(ConfigError, match=r"stream 'pair' has target_width=5; it must be at least 0 and below the "
                                          r"stream's width 5"):
        CachedActivationsWriter(tmp_path / "bad", 8, streams=streams)
