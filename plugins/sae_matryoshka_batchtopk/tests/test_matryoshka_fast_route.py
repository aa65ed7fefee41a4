"""Matryoshka's nested losses on BatchTopK's support route against its own dense step (FastRouteConformance)."""

from __future__ import annotations

from typing import Any, ClassVar

from saecore.testing import FastRouteConformance


class TestMatryoshkaFastRoute(FastRouteConformance):
    training_recipe = "matryoshka_batchtopk"
    config_overrides: ClassVar[dict[str, Any]] = {"k": 4, "matryoshka_widths": [10, 40]}


class TestMatryoshkaPerLevelAuxKFastRoute(FastRouteConformance):
    training_recipe = "matryoshka_batchtopk"
    config_overrides: ClassVar[dict[str, Any]] = {
        "k": 4, "matryoshka_widths": [10, 40], "use_matryoshka_aux_loss": True, "rescale_acts_by_decoder_norm": False,
    }


class TestMatryoshkaRescaledPerLevelAuxKFastRoute(FastRouteConformance):
    training_recipe = "matryoshka_batchtopk"
    config_overrides: ClassVar[dict[str, Any]] = {
        "k": 4, "matryoshka_widths": [10, 40], "use_matryoshka_aux_loss": True, "aux_loss_coefficient": 0.5,
    }
