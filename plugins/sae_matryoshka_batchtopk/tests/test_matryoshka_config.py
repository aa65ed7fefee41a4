"""matryoshka_widths: strictly increasing, d_sae appended, errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest
from saecore_sae_jumprelu.jumprelu_sae import JumpReLUSAEConfig
from saecore_sae_matryoshka_batchtopk.config import MatryoshkaBatchTopKTrainingSAEConfig

from saecore import ConfigError


def make(**fields: Any) -> MatryoshkaBatchTopKTrainingSAEConfig:
    return MatryoshkaBatchTopKTrainingSAEConfig(**{"d_in": 8, "d_sae": 32, "k": 4, **fields})


def test_defaults_are_saelens_v6s() -> None:
    cfg = make(d_sae=128, k=100, matryoshka_widths=[16])
    assert cfg.use_matryoshka_aux_loss is False
    assert (cfg.k, cfg.topk_threshold_lr, cfg.aux_loss_coefficient, cfg.rescale_acts_by_decoder_norm) == (
        100, 0.01, 1.0, True)
    assert MatryoshkaBatchTopKTrainingSAEConfig.model_fields["matryoshka_widths"].get_default(
        call_default_factory=True) == []


def test_d_sae_is_appended_when_missing() -> None:
    assert make(matryoshka_widths=[4, 16]).matryoshka_widths == [4, 16, 32]
    assert make(matryoshka_widths=[4, 32]).matryoshka_widths == [4, 32]


def test_saves_as_jumprelu() -> None:
    cfg = make(matryoshka_widths=[8])
    assert cfg.inference_config_class() is JumpReLUSAEConfig
    details = cfg.to_inference_dict()["metadata"]["training_architecture_details"]
    assert details["matryoshka_widths"] == [8, 32]


@pytest.mark.parametrize(
    ("widths", "message"),
    [
        ([], r"field 'matryoshka_widths' is empty"),
        ([8, 8], r"field 'matryoshka_widths' = \[8, 8\] is not strictly increasing"),
        ([16, 4], r"field 'matryoshka_widths' = \[16, 4\] is not strictly increasing"),
        ([0, 8], r"field 'matryoshka_widths' = \[0, 8\]: \[0\] out of range"),
        ([8, 40], r"field 'matryoshka_widths' = \[8, 40\]: \[40\] out of range; allowed: strictly increasing "
                  r"widths in \[1, d_sae=32\]"),
    ],
)
def test_bad_widths_name_the_field_and_what_is_allowed(widths: list[int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make(matryoshka_widths=widths)


def test_batchtopk_rules_still_apply() -> None:
    with pytest.raises(ConfigError, match="field 'k'"):
        make(k=64, matryoshka_widths=[8])
