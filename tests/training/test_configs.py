"""TrainerConfig, LoggingConfig and TrainingRunnerConfig: defaults, validation, dict round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError
from saecore_sae_standard.standard_sae import StandardTrainingSAEConfig
from training_helpers import TOY_SOURCE_NAME, ToySourceConfig, make_config

from saecore.errors import ConfigError, UnknownNameError
from saecore.sources.base import SourceConfig
from saecore.training import LoggingConfig, TrainerConfig, TrainingRunnerConfig
from saecore.training.runner_config import jsonable_fields


def test_defaults_follow_saelens() -> None:
    cfg = TrainerConfig()
    assert (cfg.training_tokens, cfg.train_batch_size_tokens, cfg.lr) == (2_000_000, 4096, 3e-4)
    assert (cfg.adam_beta1, cfg.adam_beta2, cfg.lr_scheduler_name) == (0.9, 0.999, "constant")
    assert (cfg.dead_feature_window, cfg.feature_sampling_window, cfg.n_eval_batches) == (1000, 2000, 10)
    assert cfg.resolved_lr_end == pytest.approx(3e-5)
    assert cfg.total_training_steps == 2_000_000 // 4096
    logging = LoggingConfig()
    assert (logging.log_to_wandb, logging.wandb_log_frequency, logging.eval_every_n_wandb_logs) == (False, 10, 100)


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", -1.0), ("training_tokens", -5), ("train_batch_size_tokens", 0), ("lr_warm_up_steps", -1),
     ("dead_feature_window", 0), ("n_checkpoints", -2), ("max_grad_norm", 0.0), ("adam_beta1", 1.0)],
)
def test_bad_values_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError) as info:
        TrainerConfig(**{field: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_fewer_tokens_than_one_batch_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"training_tokens \(100\) is less than train_batch_size_tokens \(4096\)"):
        TrainerConfig(training_tokens=100)


def test_schedule_longer_than_training_is_rejected() -> None:
    with pytest.raises(ValidationError, match="lr_warm_up_steps"):
        TrainerConfig(training_tokens=10 * 4096, lr_warm_up_steps=6, lr_decay_steps=5)


def test_paths_and_scheduler_name_are_normalised(tmp_path: Path) -> None:
    cfg = TrainerConfig(checkpoint_path=tmp_path, lr_scheduler_name="CosineAnnealing")
    assert cfg.checkpoint_path == str(tmp_path)
    assert cfg.lr_scheduler_name == "cosineannealing"


def test_runner_config_round_trips_through_a_dict(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, logger=LoggingConfig(wandb_log_frequency=3))
    data = cfg.to_dict()
    assert data["sae"]["architecture"] == "standard"
    assert data["source"] == {"name": TOY_SOURCE_NAME, **ToySourceConfig().model_dump()}
    rebuilt = TrainingRunnerConfig.from_dict(data)
    assert rebuilt == cfg
    assert isinstance(rebuilt.sae, StandardTrainingSAEConfig)
    assert rebuilt.trainer_config() == TrainerConfig(**{k: getattr(cfg, k) for k in TrainerConfig.model_fields})


def test_sae_dict_needs_a_known_architecture_and_known_fields() -> None:
    with pytest.raises(ConfigError, match="needs 'architecture'"):
        TrainingRunnerConfig.from_dict({"sae": {"d_in": 8, "d_sae": 16}, "source": {"name": TOY_SOURCE_NAME}})
    with pytest.raises(ConfigError, match="unknown field 'bogus'"):
        TrainingRunnerConfig.from_dict({
            "sae": {"architecture": "standard", "d_in": 8, "d_sae": 16, "bogus": 1},
            "source": {"name": TOY_SOURCE_NAME},
        })
    with pytest.raises(ConfigError, match="d_sae"):
        TrainingRunnerConfig.from_dict(
            {"sae": {"architecture": "standard", "d_in": 8, "d_sae": -1}, "source": {"name": TOY_SOURCE_NAME}}
        )
    with pytest.raises(UnknownNameError, match="no_such_recipe"):
        TrainingRunnerConfig.from_dict({"sae": {"architecture": "no_such_recipe", "d_in": 8, "d_sae": 16}})


def test_source_dict_needs_a_registered_name() -> None:
    sae = {"architecture": "standard", "d_in": 8, "d_sae": 16}
    with pytest.raises(ConfigError, match="needs 'name'"):
        TrainingRunnerConfig.from_dict({"sae": sae, "source": {"d_in": 8}})
    with pytest.raises(UnknownNameError, match="no_such_source"):
        TrainingRunnerConfig.from_dict({"sae": sae, "source": {"name": "no_such_source"}})


def test_in_memory_tensors_are_recorded_by_placeholder(tmp_path: Path) -> None:
    import torch

    from saecore.sources.in_memory import TensorSourceConfig

    cfg = make_config(tmp_path, source=TensorSourceConfig(data=torch.zeros(64, 8)))
    data = cfg.to_dict()
    json.dumps(data)
    assert data["source"]["name"] == "tensor"
    assert isinstance(data["source"]["data"], str)


def test_fields_json_cannot_hold_become_placeholders() -> None:
    class Holder(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        weights: Any
        name: str = "x"

    assert jsonable_fields(Holder(weights=object())) == {"weights": "<object>", "name": "x"}


def test_unregistered_source_config_class_is_named(tmp_path: Path) -> None:
    class StraySourceConfig(SourceConfig):
        pass

    cfg = make_config(tmp_path, source=StraySourceConfig())
    with pytest.raises(ConfigError, match="StraySourceConfig is not the config class of any registered source"):
        cfg.to_dict()
