"""``saecore train`` presets come from each recipe's own declaration; the core adds only generic ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fixtures.signed_topk import SIGNED_TOPK, SignedTopKPlugin

from saecore.cli.train_presets import apply_presets


@pytest.fixture(autouse=True)
def signed_topk_registered(saecore_register: Callable[[Any, str], None]) -> None:
    saecore_register(SignedTopKPlugin(), SIGNED_TOPK)


def test_an_outside_recipe_gets_its_declared_synthetic_presets() -> None:
    trainer: dict[str, Any] = {}
    sae = apply_presets(SIGNED_TOPK, "synthetic", 16, {}, trainer)
    assert sae == {"d_in": 16, "d_sae": 128, "k": 8}
    assert trainer == {"lr": 2e-3, "training_tokens": 1_000_000, "tune_malloc": True}


def test_user_settings_win_over_presets() -> None:
    trainer: dict[str, Any] = {"lr": 1e-4, "tune_malloc": False}
    sae = apply_presets(SIGNED_TOPK, "synthetic", 16, {"k": 3, "d_sae": 64}, trainer)
    assert sae == {"d_in": 16, "d_sae": 64, "k": 3}
    assert trainer == {"lr": 1e-4, "training_tokens": 1_000_000, "tune_malloc": False}


def test_other_sources_get_only_the_width_and_the_command_defaults() -> None:
    trainer: dict[str, Any] = {}
    assert apply_presets(SIGNED_TOPK, "llm", 16, {}, trainer) == {"d_in": 16, "d_sae": 128}
    assert trainer == {"tune_malloc": True}


@pytest.mark.parametrize(
    ("arch", "sae", "trainer"),
    [
        ("standard", {"l1_coefficient": 0.5}, {"lr": 1e-2}),
        ("gated", {"l1_coefficient": 1.0}, {"lr": 5e-3}),
        ("jumprelu", {"l0_coefficient": 0.3}, {"lr": 5e-3}),
        ("topk", {"k": 8}, {"lr": 1e-2}),
        ("batchtopk", {"k": 8, "rescale_acts_by_decoder_norm": False, "topk_threshold_lr": 0.05},
         {"lr": 1e-2, "train_batch_size_tokens": 2048}),
        ("matryoshka_batchtopk",
         {"k": 8, "rescale_acts_by_decoder_norm": False, "topk_threshold_lr": 0.05, "matryoshka_widths": [96]},
         {"lr": 1e-2, "train_batch_size_tokens": 2048}),
    ],
)
def test_first_party_quick_start_settings(arch: str, sae: dict[str, Any], trainer: dict[str, Any]) -> None:
    pytest.importorskip(f"saecore_sae_{arch}")
    trainer_values: dict[str, Any] = {}
    assert apply_presets(arch, "synthetic", 16, {}, trainer_values) == {"d_in": 16, "d_sae": 128, **sae}
    assert trainer_values == {"training_tokens": 1_000_000, "tune_malloc": True, **trainer}


def test_a_preset_may_depend_on_the_width_the_user_chose() -> None:
    pytest.importorskip("saecore_sae_matryoshka_batchtopk")
    sae = apply_presets("matryoshka_batchtopk", "synthetic", 16, {"d_sae": 64}, {})
    assert sae["matryoshka_widths"] == [48]
