"""Sweeps: several SAEs trained together on one stream, each exactly as it would train alone."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from saecore_sae_standard.standard_sae import StandardTrainingSAEConfig
from safetensors.torch import load_file
from training_helpers import ToySource, ToySourceConfig, make_config

from saecore import hookimpl
from saecore.errors import ConfigError
from saecore.registry import add_in_process_plugin, remove_in_process_plugin
from saecore.sources.base import DEFAULT_STREAM
from saecore.training import (
    SAESweepConfig,
    SAESweepRunner,
    SweepMember,
    TrainingDivergedError,
    TrainingInterruptedError,
    TrainingRunner,
    TrainingRunnerConfig,
)
from saecore.training.shared_stream import SharedBatches

B = 32


def _run(tmp_path: Path, name: str, **overrides: Any) -> TrainingRunnerConfig:
    """One SAE's config: input scale, LR warm-up and cosine decay, coefficient warm-up, checkpoints shared."""
    values: dict[str, Any] = {
        "sae": StandardTrainingSAEConfig(d_in=8, d_sae=16, l1_coefficient=0.05, l1_warm_up_steps=10,
                                         normalize_activations="expected_average_only_in"),
        "source": ToySourceConfig(offset=2.0),
        "lr_scheduler_name": "cosineannealing", "lr_warm_up_steps": 5, "lr_decay_steps": 8,
        "feature_sampling_window": 12, "dead_feature_window": 6,
        "output_path": tmp_path / "output" / name,
    }
    values.update(overrides)
    config = make_config(tmp_path, **values)
    return config


def _members(tmp_path: Path, **shared: Any) -> list[SweepMember]:
    members = [
        SweepMember(name="narrow", run=_run(tmp_path, "narrow", **shared)),
        SweepMember(name="wide", run=_run(
            tmp_path, "wide", lr=1e-2, sae=StandardTrainingSAEConfig(
                d_in=8, d_sae=32, l1_coefficient=0.2, normalize_activations="expected_average_only_in"), **shared)),
    ]
    try:
        from saecore_sae_topk import TopKTrainingSAEConfig
    except ImportError:
        return members
    topk = TopKTrainingSAEConfig(d_in=8, d_sae=24, k=3, normalize_activations="expected_average_only_in")
    members.append(SweepMember(name="topk", run=_run(tmp_path, "topk", sae=topk, **shared)))
    return members


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "sae_weights.safetensors"))


def _assert_same_output(a: Path, b: Path) -> None:
    weights_a, weights_b = _weights(a), _weights(b)
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    assert torch.equal(load_file(str(a / "sparsity.safetensors"))["sparsity"],
                       load_file(str(b / "sparsity.safetensors"))["sparsity"])
    assert json.loads((a / "cfg.json").read_text()) == json.loads((b / "cfg.json").read_text())


def test_each_sae_of_a_sweep_ends_with_the_weights_of_its_solo_run(tmp_path: Path) -> None:
    members = _members(tmp_path / "sweep")
    runner = SAESweepRunner(SAESweepConfig(members=members))
    saes = runner.run()
    assert list(saes) == [member.name for member in members] == list(runner.summaries)
    for member in members:
        solo = member.run.model_copy(update={"output_path": str(tmp_path / "solo" / member.name),
                                             "checkpoint_path": str(tmp_path / "solo" / "checkpoints")})
        TrainingRunner(solo).run()
        _assert_same_output(tmp_path / "solo" / member.name, Path(member.run.output_path or ""))
        runner_cfg = json.loads((Path(member.run.output_path or "") / "runner_cfg.json").read_text())
        assert runner_cfg == member.run.to_dict()


def test_the_source_serves_each_batch_once_for_all_saes(tmp_path: Path) -> None:
    cfg = _run(tmp_path, "one")
    alone = ToySource(cfg.source, seed=cfg.seed)
    TrainingRunner(cfg, source=alone).run()
    shared = ToySource(cfg.source, seed=cfg.seed)
    SAESweepRunner(SAESweepConfig(members=_members(tmp_path / "sweep")), source=shared).run()
    assert shared.n_batches == alone.n_batches == 3 + 40 + 2  # norm estimate, steps, final evaluation


def test_the_tee_draws_once_and_holds_only_what_some_reader_has_not_read() -> None:
    drawn: list[int] = []

    class CountingHandout:
        mode, per_rank_state = "single", False

        def local_batch(self, size: int) -> torch.Tensor:
            drawn.append(size)
            return torch.full((size, 4), float(len(drawn)))

        def global_batch(self, size: int) -> torch.Tensor:
            return self.local_batch(size)

    shared = SharedBatches(CountingHandout(), 2)  # type: ignore[arg-type]
    first, second = shared.draw(0, "local", 3), shared.draw(0, "local", 3)
    assert shared.held_batches == 2 and drawn == [3, 3]
    assert torch.equal(shared.draw(1, "local", 3), first) and shared.held_batches == 1
    assert torch.equal(shared.draw(1, "local", 3), second) and shared.held_batches == 0
    with pytest.raises(RuntimeError, match="same order"):
        shared.draw(0, "local", 5)
        shared.draw(1, "global", 5)


def test_a_signal_checkpoints_every_sae_at_one_step_and_the_sweep_resumes_exactly(tmp_path: Path) -> None:
    SAESweepRunner(SAESweepConfig(members=_members(tmp_path / "straight"))).run()

    members = _members(tmp_path / "stopped")
    source = ToySource(members[0].run.source, seed=42)

    def send_sigterm(index: int, batch: torch.Tensor) -> torch.Tensor:
        if index == 3 + 17:  # after the norm estimate, during step 17
            signal.raise_signal(signal.SIGTERM)
        return batch

    source.on_batch = send_sigterm
    with pytest.raises(TrainingInterruptedError) as info:
        SAESweepRunner(SAESweepConfig(members=members), source=source).run()
    checkpoint = tmp_path / "stopped" / "checkpoints" / str(17 * B)
    assert info.value.checkpoint == checkpoint
    assert sorted(p.name for p in checkpoint.iterdir()) == sorted(member.name for member in members)

    resumed = _members(tmp_path / "stopped", resume_from_checkpoint=checkpoint)
    SAESweepRunner(SAESweepConfig(members=resumed)).run()
    for member in members:
        _assert_same_output(tmp_path / "straight" / "output" / member.name,
                            tmp_path / "stopped" / "output" / member.name)


class TwoStreamSourceConfig(ToySourceConfig):
    d_in: int = 14
    keep: str | None = None


class TwoStreamSource(ToySource):
    """Two hooks side by side: stream ``a`` is columns 0-7, ``b`` columns 8-13 (``keep`` serves one alone)."""

    WIDTHS: ClassVar[dict[str, int]] = {"a": 8, "b": 6}

    @property
    def d_in(self) -> int:
        return self.WIDTHS[self.cfg.keep] if self.cfg.keep else 14  # type: ignore[attr-defined]

    def next_batch(self, batch_size: int) -> torch.Tensor:
        batch = super().next_batch(batch_size)
        keep = self.cfg.keep  # type: ignore[attr-defined]
        return batch if keep is None else (batch[:, :8] if keep == "a" else batch[:, 8:])

    def streams(self) -> dict[str, int]:
        keep = self.cfg.keep  # type: ignore[attr-defined]
        return {keep: self.WIDTHS[keep]} if keep else dict(self.WIDTHS)

    def stream_metadata(self, stream: str) -> dict[str, Any]:
        return {**self.sae_metadata(), "hook_name": stream}


class TwoStreamPlugin:
    @hookimpl
    def saecore_register_sources(self, register: Any) -> None:
        register("two_stream_test_source", TwoStreamSource, TwoStreamSourceConfig)


@pytest.fixture(autouse=True, scope="module")
def two_stream_source_registered() -> Iterator[None]:
    add_in_process_plugin(TwoStreamPlugin(), "two_stream_test_source")
    yield
    remove_in_process_plugin("two_stream_test_source")


def test_saes_on_different_streams_each_see_their_own_columns(tmp_path: Path) -> None:
    cfg = TwoStreamSourceConfig()
    members = [
        SweepMember(name="on-a", stream="a", run=_run(tmp_path, "on-a", source=cfg)),
        SweepMember(name="on-b", stream="b", run=_run(tmp_path, "on-b", source=cfg, sae=StandardTrainingSAEConfig(
            d_in=6, d_sae=12, l1_coefficient=0.05, normalize_activations="expected_average_only_in"))),
    ]
    SAESweepRunner(SAESweepConfig(members=members), source=TwoStreamSource(cfg, seed=42)).run()
    for member in members:
        assert member.stream is not None
        alone_cfg = TwoStreamSourceConfig(keep=member.stream)
        solo = member.run.model_copy(update={"source": alone_cfg, "output_path": str(tmp_path / "solo" / member.name),
                                             "checkpoint_path": str(tmp_path / "solo" / "checkpoints")})
        TrainingRunner(solo, source=TwoStreamSource(alone_cfg, seed=42)).run()
        out = Path(member.run.output_path or "")
        for name, tensor in _weights(out).items():
            assert torch.equal(tensor, _weights(tmp_path / "solo" / member.name)[name]), (member.name, name)
        assert json.loads((out / "cfg.json").read_text())["metadata"]["hook_name"] == member.stream


def test_a_single_stream_source_has_the_default_stream(tmp_path: Path) -> None:
    source = ToySource(ToySourceConfig(), seed=0)
    assert source.streams() == {DEFAULT_STREAM: 8}
    assert source.stream_metadata(DEFAULT_STREAM) == source.sae_metadata()


@pytest.mark.parametrize(
    ("streams", "message"),
    [
        ((None, None), "serves several streams (a, b); set its 'stream'"),
        (("a", "c"), "stream='c' is not served by the source; its streams are a, b"),
        (("a", "b"), "sweep SAE 'second': sae.d_in = 8, but its stream serves activations of width 6"),
    ],
)
def test_stream_mistakes_are_named(tmp_path: Path, streams: tuple[str | None, str | None], message: str) -> None:
    cfg = TwoStreamSourceConfig()
    members = [SweepMember(name=name, stream=stream, run=_run(tmp_path, name, source=cfg))
               for name, stream in zip(("first", "second"), streams)]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SAESweepRunner(SAESweepConfig(members=members), source=TwoStreamSource(cfg, seed=42)).run()


def test_settings_that_decide_the_stream_must_agree(tmp_path: Path) -> None:
    members = [SweepMember(name="a", run=_run(tmp_path, "a")),
               SweepMember(name="b", run=_run(tmp_path, "b", train_batch_size_tokens=64))]
    with pytest.raises(ConfigError, match=r"train_batch_size_tokens must be the same for every SAE of a sweep.*'a' has "
                                          r"32 and 'b' has 64"):
        from saecore.config.validation import validate_model

        validate_model(SAESweepConfig, {"members": members}, "sweep")
    with pytest.raises(ValueError, match="repeated: a"):
        SAESweepConfig(members=[members[0], members[0]])
    with pytest.raises(ValueError, match="must be a folder name"):
        SweepMember(name="../x", run=members[0].run)


def test_a_sweep_file_merges_each_entry_into_the_base(tmp_path: Path) -> None:
    pytest.importorskip("saecore_sae_topk")
    base = {
        "training_tokens": 4096, "output_path": str(tmp_path / "runs"), "logger": {"run_name": "exp"},
        "source": {"name": "toy_test_source"}, "sae": {"architecture": "topk", "d_in": 8, "d_sae": 32, "k": 4},
    }
    cfg = SAESweepConfig.from_dict({**base, "sweep": [
        {"name": "k4"},
        {"name": "k2", "sae": {"k": 2}, "lr": 1e-3},
        {"name": "relu", "sae": {"architecture": "standard", "l1_coefficient": 2.0}, "output_path": "elsewhere"},
    ]})
    k4, k2, relu = (member.run for member in cfg.members)
    assert (k4.sae.k, k2.sae.k, k2.lr, k4.lr) == (4, 2, 1e-3, 3e-4)  # type: ignore[attr-defined]
    assert relu.sae.architecture() == "standard" and relu.sae.d_sae == 32
    assert (k4.output_path, relu.output_path) == (str(tmp_path / "runs" / "k4"), "elsewhere")
    assert (k4.logger.run_name, k2.logger.run_name) == ("exp-k4", "exp-k2")
    with pytest.raises(ConfigError, match="sets 'source'"):
        SAESweepConfig.from_dict({**base, "sweep": [{"name": "x", "source": {"name": "synthetic"}}]})
    with pytest.raises(ConfigError, match="non-empty list"):
        SAESweepConfig.from_dict(base)


def test_resuming_a_sweep_needs_every_saes_checkpoint(tmp_path: Path) -> None:
    SAESweepRunner(SAESweepConfig(members=_members(tmp_path, n_checkpoints=1))).run()
    checkpoint = tmp_path / "checkpoints" / str(20 * B)
    (checkpoint / "wide" / "cfg.json").unlink()
    for path in sorted((checkpoint / "wide").iterdir()):
        path.unlink()
    (checkpoint / "wide").rmdir()
    with pytest.raises(ConfigError, match="'wide' is missing there"):
        SAESweepRunner(SAESweepConfig(members=_members(tmp_path, resume_from_checkpoint=checkpoint))).run()


def test_a_diverging_sae_is_named(tmp_path: Path) -> None:
    members = _members(tmp_path, n_checkpoints=3)
    source = ToySource(members[0].run.source, seed=42)
    source.on_batch = lambda index, batch: torch.full_like(batch, float("inf")) if index >= 3 + 15 else batch
    with pytest.raises(TrainingDivergedError, match=r"training of the sweep's SAE '(narrow|wide)' diverged") as info:
        SAESweepRunner(SAESweepConfig(members=members), source=source).run()
    assert info.value.step == 15
    assert info.value.last_checkpoint == tmp_path / "checkpoints" / str(10 * B)
