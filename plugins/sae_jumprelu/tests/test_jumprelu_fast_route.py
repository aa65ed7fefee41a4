"""The JumpReLU recipe's support route against its own dense step (saecore's FastRouteConformance)."""

from __future__ import annotations

from typing import Any

import torch

from saecore import TrainingSAE
from saecore.testing import FastRouteConformance


class TestJumpReLUFastRoute(FastRouteConformance):
    training_recipe = "jumprelu"
    config_overrides = {"l0_coefficient": 0.3, "jumprelu_sparsity_loss_mode": "step"}  # noqa: RUF012 (read as a class attribute)

    def sparsify(self, sae: TrainingSAE[Any]) -> None:
        with torch.no_grad():
            sae.threshold.fill_(2.0)  # pre-activations about N(0, 1): about 2% above, some in the window


class TestJumpReLUTanhFastRoute(TestJumpReLUFastRoute):
    config_overrides = {"l0_coefficient": 0.3, "jumprelu_sparsity_loss_mode": "tanh"}  # noqa: RUF012 (read as a class attribute)
