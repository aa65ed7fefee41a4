"""SourceConformance passes the core's own sources and catches sources that break the contract.

The cached source runs it on a cache of two streams; a toy source of named streams runs
the several-stream checks, each stream also read alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from saecore import ActivationSource, SourceConfig, hookimpl
from saecore.hookspecs import RegisterSource
from saecore.registry import add_in_process_plugin, remove_in_process_plugin
from saecore.sources.cached import CachedActivationsWriter, StreamInfo
from saecore.testing import SourceConformance


class TestSyntheticSource(SourceConformance):
    source = "synthetic"
    config: ClassVar[dict[str, Any]] = {"d_in": 8, "n_features": 16, "avg_active_features": 2.0}


class TestTensorSource(SourceConformance):
    source = "tensor"
    config: ClassVar[dict[str, Any]] = {"data": torch.randn(2000, 6, generator=torch.Generator().manual_seed(0))}
    oversized_batch_size = 2001


class TestSyntheticTranscoderSource(SourceConformance):
    source = "synthetic_transcoder"
    config: ClassVar[dict[str, Any]] = {"d_in": 8, "d_out": 5, "n_features": 16, "avg_active_features": 2.0}


class TestTensorSourceOfPairs(SourceConformance):
    source = "tensor"
    config: ClassVar[dict[str, Any]] = {
        "data": torch.randn(2000, 6, generator=torch.Generator().manual_seed(0)),
        "target": torch.randn(2000, 3, generator=torch.Generator().manual_seed(1)),
    }
    oversized_batch_size = 2001


@pytest.fixture(scope="module")
def cache_of_two_streams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache whose rows are a plain stream (4 columns) and a stream of (input, target) pairs (3 + 2)."""
    path = tmp_path_factory.mktemp("cache") / "two_streams"
    streams = (StreamInfo("plain", 4, {"hook_name": "plain"}),
               StreamInfo("pair", 5, {"hook_name": "pair", "hook_name_out": "pair_out"}, target_width=2))
    with CachedActivationsWriter(path, 9, shard_size_tokens=512, metadata={"hook_name": "plain"},
                                 streams=streams) as writer:
        writer.append(torch.randn(2048, 9, generator=torch.Generator().manual_seed(0)))
    return path


class TestCachedSourceOfTwoStreams(SourceConformance):
    source = "cached"

    @pytest.fixture(autouse=True)
    def _cache(self, cache_of_two_streams: Path) -> None:
        self.config = {"path": cache_of_two_streams}  # type: ignore[misc]


class CountingConfig(SourceConfig):
    d_in: int = 4


class ForgetfulSource(ActivationSource):
    """Deterministic batches, but a state_dict that does not record the position."""

    cfg: CountingConfig

    def __init__(self, cfg: CountingConfig, *, seed: int = 42, device: str = "cpu") -> None:
        super().__init__(cfg, seed=seed, device=device)
        self.served = 0

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    def next_batch(self, batch_size: int) -> torch.Tensor:
        start = self.served + self.seed
        self.served += batch_size
        rows = torch.arange(start, start + batch_size, dtype=torch.float32)
        return rows.unsqueeze(1).repeat(1, self.cfg.d_in)


class ResumableSource(ForgetfulSource):
    def state_dict(self) -> dict[str, Any]:
        return {"served": self.served}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.served = int(state["served"])


class WrongWidthSource(ResumableSource):
    def next_batch(self, batch_size: int) -> torch.Tensor:
        return super().next_batch(batch_size)[:, :-1]


class StreamsConfig(SourceConfig):
    streams: list[str] = ["a", "b"]  # noqa: RUF012 (a pydantic field)
    width: int = 3


class NamedStreamsSource(ResumableSource):
    """Several streams side by side; each stream's columns depend on its name, the row and the seed."""

    cfg: StreamsConfig  # type: ignore[assignment]

    @property
    def d_in(self) -> int:
        return self.cfg.width * len(self.cfg.streams)

    def streams(self) -> dict[str, int]:
        return {name: self.cfg.width for name in self.cfg.streams}

    def stream_key(self, name: str) -> int:
        return sum(map(ord, name))

    def next_batch(self, batch_size: int) -> torch.Tensor:
        rows = torch.arange(self.served, self.served + batch_size, dtype=torch.float32).unsqueeze(1)
        self.served += batch_size
        columns = torch.arange(self.cfg.width, dtype=torch.float32)
        return torch.cat([torch.sin(rows * 0.37 * self.stream_key(name) + columns + self.seed)
                          for name in self.cfg.streams], dim=1)


class PositionalStreamsSource(NamedStreamsSource):
    """Each stream's columns depend on where it stands, so a stream read alone serves other values."""

    def stream_key(self, name: str) -> int:
        return self.cfg.streams.index(name) + 1


class StreamsBeyondDInSource(NamedStreamsSource):
    def streams(self) -> dict[str, int]:
        return {**super().streams(), "extra": 1}


class BrokenSourcesPlugin:
    @hookimpl
    def saecore_register_sources(self, register: RegisterSource) -> None:
        register("forgetful", ForgetfulSource, CountingConfig)
        register("wrong_width", WrongWidthSource, CountingConfig)
        register("named_streams", NamedStreamsSource, StreamsConfig)
        register("positional_streams", PositionalStreamsSource, StreamsConfig)
        register("streams_beyond_d_in", StreamsBeyondDInSource, StreamsConfig)


@pytest.fixture
def broken_sources() -> Iterator[None]:
    add_in_process_plugin(BrokenSourcesPlugin(), "broken_sources")
    yield
    remove_in_process_plugin("broken_sources")


@pytest.mark.usefixtures("broken_sources")
class TestNamedStreamsSource(SourceConformance):
    source = "named_streams"
    stream_alone: ClassVar[dict[str, dict[str, Any]]] = {"b": {"streams": ["b"]}, "a": {"streams": ["a"]}}


class ForgetfulKit(SourceConformance):
    source = "forgetful"


class WrongWidthKit(SourceConformance):
    source = "wrong_width"


class PositionalStreamsKit(SourceConformance):
    source = "positional_streams"
    stream_alone: ClassVar[dict[str, dict[str, Any]]] = {"b": {"streams": ["b"]}}


class StreamsBeyondDInKit(SourceConformance):
    source = "streams_beyond_d_in"


@pytest.mark.usefixtures("broken_sources")
@pytest.mark.parametrize(("kit_class", "passes", "fails", "message"), [
    (ForgetfulKit, "test_same_seed_gives_the_same_batches", "test_state_dict_resumes_exactly_after_a_checkpoint",
     "the resumed source: batch 0 differs"),
    (WrongWidthKit, None, "test_batches_have_the_promised_shape_dtype_and_device", "asked for 64 rows of 4"),
    (PositionalStreamsKit, "test_streams_are_named_widths_that_add_up_to_d_in",
     "test_each_stream_is_seeded_and_read_alone_serves_its_columns", "stream 'b' read alone: batch 0 differs"),
    (StreamsBeyondDInKit, None, "test_streams_are_named_widths_that_add_up_to_d_in", "add up to 7, but d_in is 6"),
])
def test_kit_catches_a_source_that_breaks_the_contract(
    kit_class: type[SourceConformance], passes: str | None, fails: str, message: str
) -> None:
    kit = kit_class()
    if passes is not None:
        getattr(kit, passes)()
    with pytest.raises(AssertionError, match=message):
        getattr(kit, fails)()
    kit.teardown_method(None)
