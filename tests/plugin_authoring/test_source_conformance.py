"""SourceConformance passes the core's own sources and catches sources that break the contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import torch

from saecore import ActivationSource, SourceConfig, hookimpl
from saecore.hookspecs import RegisterSource
from saecore.registry import add_in_process_plugin, remove_in_process_plugin
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


class WrongWidthSource(ForgetfulSource):
    def state_dict(self) -> dict[str, Any]:
        return {"served": self.served}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.served = int(state["served"])

    def next_batch(self, batch_size: int) -> torch.Tensor:
        return super().next_batch(batch_size)[:, :-1]


class BrokenSourcesPlugin:
    @hookimpl
    def saecore_register_sources(self, register: RegisterSource) -> None:
        register("forgetful", ForgetfulSource, CountingConfig)
        register("wrong_width", WrongWidthSource, CountingConfig)


@pytest.fixture
def broken_sources() -> Iterator[None]:
    add_in_process_plugin(BrokenSourcesPlugin(), "broken_sources")
    yield
    remove_in_process_plugin("broken_sources")


class ForgetfulKit(SourceConformance):
    source = "forgetful"


class WrongWidthKit(SourceConformance):
    source = "wrong_width"


@pytest.mark.usefixtures("broken_sources")
def test_kit_catches_a_state_dict_that_does_not_resume() -> None:
    kit = ForgetfulKit()
    kit.test_same_seed_gives_the_same_batches()
    with pytest.raises(AssertionError, match="the resumed source: batch 0 differs"):
        kit.test_state_dict_resumes_exactly_after_a_checkpoint()
    kit.teardown_method(None)


@pytest.mark.usefixtures("broken_sources")
def test_kit_catches_batches_narrower_than_d_in() -> None:
    kit = WrongWidthKit()
    with pytest.raises(AssertionError, match="asked for 64 rows of 4"):
        kit.test_batches_have_the_promised_shape_dtype_and_device()
    kit.teardown_method(None)
