"""The TopK recipe's sparse step against its own dense step (saecore's FastRouteConformance)."""

from __future__ import annotations

from saecore.testing import FastRouteConformance


class TestTopKFastRoute(FastRouteConformance):
    training_recipe = "topk"
    config_overrides = {"k": 4, "aux_loss_coefficient": 0.7}  # noqa: RUF012 (read as a class attribute)


class TestTopKWithoutRescalingFastRoute(FastRouteConformance):
    training_recipe = "topk"
    config_overrides = {"k": 4, "aux_loss_coefficient": 0.7, "rescale_acts_by_decoder_norm": False}  # noqa: RUF012 (read as a class attribute)
