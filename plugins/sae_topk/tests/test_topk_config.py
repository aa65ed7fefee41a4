"""Config defaults, validation errors that name the field, and registration."""

from __future__ import annotations

import pytest
from saecore_sae_topk.config import TopKSAEConfig, TopKTrainingSAEConfig
from saecore_sae_topk.topk_sae import TopKSAE
from saecore_sae_topk.topk_training_sae import TopKTrainingSAE

from saecore import ConfigError, SAEConfig, TrainingSAEConfig, get_registry


def test_defaults_match_saelens() -> None:
    inference = TopKSAEConfig(d_in=8, d_sae=128)
    assert (inference.k, inference.rescale_acts_by_decoder_norm) == (100, False)
    training = TopKTrainingSAEConfig(d_in=8, d_sae=128)
    assert training.k == 100
    assert training.aux_loss_coefficient == 1.0
    assert training.rescale_acts_by_decoder_norm is True
    assert training.use_sparse_activations is False
    assert training.decoder_init_norm == 0.1
    assert inference.to_dict()["architecture"] == training.to_dict()["architecture"] == "topk"


@pytest.mark.parametrize("config_class", [SAEConfig, TrainingSAEConfig])
def test_k_larger_than_d_sae_names_field_value_and_range(config_class: type[SAEConfig]) -> None:
    with pytest.raises(ConfigError, match=r"k = 65 is larger than d_sae = 64; allowed: 1 <= k <= d_sae \(64\)"):
        config_class.from_dict({"architecture": "topk", "d_in": 8, "d_sae": 64, "k": 65})


@pytest.mark.parametrize("config_class", [TopKSAEConfig, TopKTrainingSAEConfig])
def test_direct_construction_and_assignment_are_validated(config_class: type[SAEConfig]) -> None:
    with pytest.raises(ConfigError, match="k = 17 is larger than d_sae = 16"):
        config_class(d_in=8, d_sae=16, k=17)
    cfg = config_class(d_in=8, d_sae=16, k=16)
    with pytest.raises(ConfigError, match="k = 40 is larger than d_sae = 16"):
        cfg.k = 40  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("k", 0, "field 'k' = 0"), ("aux_loss_coefficient", -1.0, "field 'aux_loss_coefficient' = -1.0")],
)
def test_bad_values_name_the_field(field: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainingSAEConfig.from_dict({"architecture": "topk", "d_in": 8, "d_sae": 16, "k": 4, field: value})


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown field 'activation_fn'"):
        TopKSAEConfig(d_in=8, d_sae=16, k=4, activation_fn="topk")  # type: ignore[call-arg]


def test_inference_config_of_the_recipe() -> None:
    training = TopKTrainingSAEConfig(d_in=8, d_sae=16, k=3, aux_loss_coefficient=0.5)
    inference = training.to_inference_config()
    assert isinstance(inference, TopKSAEConfig)
    assert inference.k == 3 and inference.rescale_acts_by_decoder_norm is False
    details = training.to_inference_dict()["metadata"]["training_architecture_details"]
    assert details["aux_loss_coefficient"] == 0.5 and details["use_sparse_activations"] is False


def test_registered_through_the_entry_point() -> None:
    registry = get_registry()
    assert registry.architecture("topk").sae_class is TopKSAE
    assert registry.training_recipe("topk").training_sae_class is TopKTrainingSAE
