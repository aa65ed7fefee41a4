"""Checkpoints: spacing, contents, atomic writes, exact resume, signals and divergence."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_sae_standard.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from safetensors.torch import load_file
from training_helpers import NoisyTrainingSAEConfig, ToySource, ToySourceConfig, make_config

from saecore.errors import ConfigError, SAEFileError
from saecore.training import (
    SAETrainer,
    TrainingDivergedError,
    TrainingInterruptedError,
    TrainingRunner,
    TrainingRunnerConfig,
)
from saecore.training.checkpoint import serialize_weights_only
from saecore.training.trainer import checkpoint_steps

B = 32


def _resume_config(tmp_path: Path, **overrides: Any) -> TrainingRunnerConfig:
    """A run exercising everything a resume must restore.

    The input scale, LR and coefficient warm-ups, cosine decay, and (through the noisy
    recipe) the torch, numpy and Python RNG states.
    """
    sae = NoisyTrainingSAEConfig(
        d_in=8, d_sae=16, l1_coefficient=0.05, l1_warm_up_steps=10, normalize_activations="expected_average_only_in"
    )
    values: dict[str, Any] = {
        "sae": sae, "source": ToySourceConfig(offset=2.0), "lr_scheduler_name": "cosineannealing",
        "lr_warm_up_steps": 5, "lr_decay_steps": 8, "feature_sampling_window": 12, "dead_feature_window": 6,
    }
    values.update(overrides)
    return make_config(tmp_path, **values)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "sae_weights.safetensors"))


def _assert_same_output(a: Path, b: Path) -> None:
    weights_a, weights_b = _weights(a), _weights(b)
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    assert torch.equal(load_file(str(a / "sparsity.safetensors"))["sparsity"],
                       load_file(str(b / "sparsity.safetensors"))["sparsity"])
    assert json.loads((a / "cfg.json").read_text())["metadata"] == json.loads((b / "cfg.json").read_text())["metadata"]


def test_checkpoint_steps_are_evenly_spaced() -> None:
    assert checkpoint_steps(40, 3) == [10, 20, 30]
    assert checkpoint_steps(10, 2) == [4, 7]
    assert checkpoint_steps(3, 5) == [1, 2]
    assert checkpoint_steps(40, 0) == []


def test_checkpoint_folders_contents_and_weights_only_loading(tmp_path: Path) -> None:
    cfg = _resume_config(tmp_path, n_checkpoints=3, save_final_checkpoint=True)
    TrainingRunner(cfg).run()

    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["320", "640", "960", f"final_{40 * B}"]
    middle = root / "640"
    assert sorted(p.name for p in middle.iterdir()) == [
        "cfg.json", "runner_cfg.json", "sae_weights.safetensors", "source_state.pt", "sparsity.safetensors",
        "trainer_state.pt",
    ]
    state = torch.load(middle / "trainer_state.pt", weights_only=True)
    assert (state["n_training_steps"], state["n_training_tokens"]) == (20, 640)
    assert {"optimizer", "lr_schedule", "feature_stats", "activation_scaler", "rng"} <= set(state)
    source_state = torch.load(middle / "source_state.pt", weights_only=True)
    assert source_state["n_batches"] == 3 + 20  # norm estimate batches + training batches

    twin = ToySource(ToySourceConfig(offset=2.0), seed=cfg.seed)
    norms = torch.cat([twin.next_batch(B) for _ in range(3)]).double().norm(dim=-1)
    assert state["activation_scaler"]["scaling_factor"] == pytest.approx(math.sqrt(8) / float(norms.mean()), rel=1e-6)

    saved_cfg = json.loads((middle / "cfg.json").read_text())
    assert saved_cfg["architecture"] == "noisy_test_recipe"
    assert saved_cfg["normalize_activations"] == "expected_average_only_in"
    assert TrainingRunnerConfig.from_dict(json.loads((middle / "runner_cfg.json").read_text())) == cfg
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "no staging folders left behind"


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_a_checkpoint_and_resume_is_bitwise_identical(tmp_path: Path, signal_number: int) -> None:
    TrainingRunner(_resume_config(tmp_path / "straight")).run()

    interrupted_cfg = _resume_config(tmp_path / "interrupted")
    source = ToySource(interrupted_cfg.source, seed=interrupted_cfg.seed)
    signal_batch = 3 + 17  # after the norm estimate, during step 17

    def send_signal(index: int, batch: torch.Tensor) -> torch.Tensor:
        if index == signal_batch:
            signal.raise_signal(signal_number)
        return batch

    source.on_batch = send_signal
    handlers_before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(TrainingInterruptedError) as info:
        TrainingRunner(interrupted_cfg, source=source).run()
    assert {s: signal.getsignal(s) for s in handlers_before} == handlers_before
    checkpoint = tmp_path / "interrupted" / "checkpoints" / str(17 * B)
    assert info.value.checkpoint == checkpoint
    assert info.value.signal_name == signal.Signals(signal_number).name
    assert f"resume_from_checkpoint='{checkpoint}'" in str(info.value)
    assert not (tmp_path / "interrupted" / "output").exists()

    resumed_cfg = _resume_config(tmp_path / "interrupted", resume_from_checkpoint=checkpoint)
    TrainingRunner(resumed_cfg).run()
    _assert_same_output(tmp_path / "straight" / "output", tmp_path / "interrupted" / "output")


def test_resume_from_a_periodic_checkpoint_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    TrainingRunner(_resume_config(tmp_path / "a", n_checkpoints=3)).run()
    checkpoint = tmp_path / "a" / "checkpoints" / str(30 * B)
    TrainingRunner(_resume_config(tmp_path / "b", n_checkpoints=3, resume_from_checkpoint=checkpoint)).run()
    _assert_same_output(tmp_path / "a" / "output", tmp_path / "b" / "output")


def test_resuming_a_different_sae_is_refused(tmp_path: Path) -> None:
    TrainingRunner(make_config(tmp_path / "a", n_checkpoints=1)).run()
    checkpoint = tmp_path / "a" / "checkpoints" / str(20 * B)
    other = make_config(tmp_path / "b", sae=StandardTrainingSAEConfig(d_in=8, d_sae=32),
                        resume_from_checkpoint=checkpoint)
    with pytest.raises(ConfigError, match=r"sae\.d_sae is 16 but this run's is 32"):
        TrainingRunner(other).run()


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, n_checkpoints=3)
    source = ToySource(cfg.source, seed=cfg.seed)
    bad_from_batch = 15

    def poison(index: int, batch: torch.Tensor) -> torch.Tensor:
        return torch.full_like(batch, float("inf")) if index >= bad_from_batch else batch

    source.on_batch = poison
    with pytest.raises(TrainingDivergedError) as info:
        TrainingRunner(cfg, source=source).run()

    good = tmp_path / "checkpoints" / str(10 * B)
    assert info.value.step == bad_from_batch
    assert info.value.last_checkpoint == good
    assert "NaN or infinite at step 15" in str(info.value) and str(good) in str(info.value)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [str(10 * B)]
    assert all(torch.isfinite(t).all() for t in _weights(good).values())
    assert not (tmp_path / "output").exists()


def test_states_that_weights_only_loading_refuses_fail_at_save_time() -> None:
    with pytest.raises(TypeError, match=r"MySource\.state_dict"):
        serialize_weights_only({"position": object()}, "MySource.state_dict()")


def test_a_checkpoint_is_never_written_from_non_finite_weights(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=8, d_sae=16))
    trainer = SAETrainer(cfg.trainer_config(), sae, ToySource(cfg.source))
    trainer._train_step()
    with torch.no_grad():
        sae.W_dec[0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="no checkpoint was written before it"):
        trainer.save_checkpoint()
    assert not (tmp_path / "checkpoints").exists()


def test_checkpoint_path_none_writes_no_checkpoint_even_when_interrupted(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where a default "checkpoints" folder would appear
    with pytest.raises(ValueError, match="checkpoint_path=None writes no checkpoint, but n_checkpoints=2"):
        _resume_config(tmp_path, checkpoint_path=None, n_checkpoints=2)
    cfg = _resume_config(tmp_path / "run", checkpoint_path=None)
    source = ToySource(cfg.source, seed=cfg.seed)

    def send_signal(index: int, batch: torch.Tensor) -> torch.Tensor:
        if index == 3 + 4:
            signal.raise_signal(signal.SIGINT)
        return batch

    source.on_batch = send_signal
    with pytest.raises(TrainingInterruptedError, match=r"no checkpoint was written \(checkpoint_path=None\)") as info:
        TrainingRunner(cfg, source=source).run()
    assert info.value.checkpoint is None
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "checkpoints").exists()


def test_load_weights_from_checkpoint_loads_the_checkpoint_weights_only(tmp_path: Path) -> None:
    cfg = _resume_config(tmp_path, sae=StandardTrainingSAEConfig(d_in=8, d_sae=16), n_checkpoints=1)
    TrainingRunner(cfg).run()
    checkpoint = next(p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith("."))
    fresh = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=8, d_sae=16))
    fresh.load_weights_from_checkpoint(checkpoint)
    saved = load_file(checkpoint / "sae_weights.safetensors")
    assert set(fresh.state_dict()) == set(saved)
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    with pytest.raises(SAEFileError, match="has shape"):
        StandardTrainingSAE(StandardTrainingSAEConfig(d_in=8, d_sae=32)).load_weights_from_checkpoint(checkpoint)
