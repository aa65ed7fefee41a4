"""A tiny, resumable activation source and a config helper for the trainer's tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from saecore_sae_standard.standard_sae import StandardSAEConfig, StandardTrainingSAE, StandardTrainingSAEConfig

from saecore import hookimpl
from saecore.errors import ConfigError
from saecore.sources.base import ActivationSource, SourceConfig
from saecore.training import TrainingRunnerConfig

TOY_SOURCE_NAME = "toy_test_source"
NOISY_RECIPE_NAME = "noisy_test_recipe"


class ToySourceConfig(SourceConfig):
    d_in: int = Field(default=8, gt=0)
    n_features: int = Field(default=12, gt=0)
    max_batch_size: int = Field(default=100_000, gt=0)
    offset: float = 0.0
    expose_ground_truth: bool = False


class ToySource(ActivationSource):
    """Sparse non-negative mixtures of fixed unit directions, drawn from a seeded generator.

    ``on_batch(index, batch)`` (1-based index over every batch served) lets a test
    corrupt a batch or send a signal at an exact point of the run.
    """

    def __init__(self, cfg: ToySourceConfig, *, seed: int = 42, device: str = "cpu") -> None:
        super().__init__(cfg, seed=seed, device=device)
        self.cfg: ToySourceConfig = cfg
        directions = torch.randn(cfg.n_features, cfg.d_in, generator=torch.Generator().manual_seed(1234))
        self.features = directions / directions.norm(dim=-1, keepdim=True)
        self.generator = torch.Generator().manual_seed(seed)
        self.n_batches = 0
        self.closed = False
        self.on_batch: Callable[[int, torch.Tensor], torch.Tensor] | None = None

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    def next_batch(self, batch_size: int) -> torch.Tensor:
        n_features = self.cfg.n_features
        fires = torch.rand(batch_size, n_features, generator=self.generator) < 0.25
        magnitudes = torch.rand(batch_size, n_features, generator=self.generator) * 2
        batch = (fires * magnitudes) @ self.features + self.cfg.offset
        self.n_batches += 1
        if self.on_batch is not None:
            batch = self.on_batch(self.n_batches, batch)
        return batch.to(self.device)

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size > self.cfg.max_batch_size:
            raise ConfigError(
                f"train_batch_size_tokens={batch_size} is more than this source can serve at once "
                f"(max_batch_size={self.cfg.max_batch_size})"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "n_batches": self.n_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.n_batches = int(state["n_batches"])

    def sae_metadata(self) -> dict[str, Any]:
        return {"dataset_path": "toy-dataset", "hook_name": "toy.hook"}

    def ground_truth_features(self) -> torch.Tensor | None:
        return self.features if self.cfg.expose_ground_truth else None

    def close(self) -> None:
        self.closed = True


class NoisyTrainingSAEConfig(StandardTrainingSAEConfig):
    ARCHITECTURE: ClassVar[str] = NOISY_RECIPE_NAME

    @classmethod
    def inference_config_class(cls) -> type[StandardSAEConfig]:
        return StandardSAEConfig


class NoisyTrainingSAE(StandardTrainingSAE):
    """A standard SAE whose training input is jittered with torch, numpy and Python random draws.

    Its trajectory depends on the global RNG states, so only a resume that restores all
    three reproduces an uninterrupted run.
    """

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            jitter = 0.01 * (torch.randn_like(x) + float(np.random.randn()) + random.gauss(0.0, 1.0))
            x = x + jitter
        return super().encode_with_hidden_pre(x)


class ToySourcePlugin:
    @hookimpl
    def saecore_register_sources(self, register: Any) -> None:
        register(TOY_SOURCE_NAME, ToySource, ToySourceConfig)

    @hookimpl
    def saecore_register_training_recipes(self, register: Any) -> None:
        register(NOISY_RECIPE_NAME, NoisyTrainingSAE, NoisyTrainingSAEConfig)


def make_config(tmp_path: Path, **overrides: Any) -> TrainingRunnerConfig:
    """A run of 40 steps of 32 tokens on the toy source, writing under ``tmp_path``."""
    values: dict[str, Any] = {
        "sae": StandardTrainingSAEConfig(d_in=8, d_sae=16, l1_coefficient=0.05),
        "source": ToySourceConfig(),
        "training_tokens": 40 * 32,
        "train_batch_size_tokens": 32,
        "lr": 3e-3,
        "n_batches_for_norm_estimate": 3,
        "n_eval_batches": 2,
        "dead_feature_window": 20,
        "feature_sampling_window": 25,
        "output_path": tmp_path / "output",
        "checkpoint_path": tmp_path / "checkpoints",
        "verbose": False,
    }
    values.update(overrides)
    return TrainingRunnerConfig(**values)
