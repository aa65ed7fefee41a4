"""The gated recipe's support route against its own dense step (saecore's FastRouteConformance)."""

from __future__ import annotations

from typing import Any

import torch

from saecore import TrainingSAE
from saecore.testing import FastRouteConformance


class TestGatedFastRoute(FastRouteConformance):
    training_recipe = "gated"
    config_overrides = {"l1_coefficient": 0.7}  # noqa: RUF012 (read as a class attribute)

    def sparsify(self, sae: TrainingSAE[Any]) -> None:
        with torch.no_grad():
            sae.b_gate -= 2.1  # gate pre-activations about N(0, 1): about 2% of the gates open
