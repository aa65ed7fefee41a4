"""BatchTopK config: SAELens's fields and defaults, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest
from saecore_sae_batchtopk.config import BatchTopKTrainingSAEConfig
from saecore_sae_jumprelu.jumprelu_sae import JumpReLUSAEConfig

from saecore import ConfigError, TrainingSAEConfig


def make(**fields: Any) -> BatchTopKTrainingSAEConfig:
    return BatchTopKTrainingSAEConfig(**{"d_in": 8, "d_sae": 32, **fields})


def test_defaults_are_saelens_v6s() -> None:
    cfg = make(d_sae=128)
    assert (cfg.k, cfg.topk_threshold_lr, cfg.aux_loss_coefficient) == (100, 0.01, 1.0)
    assert cfg.rescale_acts_by_decoder_norm is True
    assert cfg.decoder_init_norm == 0.1
    assert cfg.architecture() == "batchtopk"


def test_k_may_be_fractional() -> None:
    assert make(k=2.5).k == 2.5


def test_saves_as_the_jumprelu_architecture() -> None:
    cfg = make(k=4)
    assert cfg.inference_config_class() is JumpReLUSAEConfig
    inference = cfg.to_inference_dict()
    assert inference["architecture"] == "jumprelu"
    assert inference["metadata"]["training_architecture"] == "batchtopk"


def test_from_dict_dispatches_on_the_recipe_name() -> None:
    cfg = TrainingSAEConfig.from_dict({"architecture": "batchtopk", "d_in": 8, "d_sae": 32, "k": 4})
    assert isinstance(cfg, BatchTopKTrainingSAEConfig)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"k": 40}, r"field 'k' = 40\.0 is larger than d_sae = 32.*0 < k <= 32"),
        ({"k": 0}, r"field 'k' = 0: .*greater than 0"),
        ({"topk_threshold_lr": 1.5}, r"field 'topk_threshold_lr' = 1\.5: .*less than or equal to 1"),
        ({"aux_loss_coefficient": -1}, r"field 'aux_loss_coefficient' = -1: .*greater than or equal to 0"),
        ({"normalize_activations": "layer_norm"}, r"field 'normalize_activations' = 'layer_norm': .*AuxK.*allowed: "
                                                  r"none, expected_average_only_in"),
        ({"use_sparse_activations": True}, r"unknown field 'use_sparse_activations'"),
    ],
)
def test_bad_values_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make(**fields)
