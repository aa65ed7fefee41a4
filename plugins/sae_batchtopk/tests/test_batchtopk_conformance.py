"""The saecore conformance kit, run against the batchtopk recipe and the jumprelu SAE it saves as."""

from __future__ import annotations

from typing import Any, ClassVar

from saecore.testing import ArchitectureConformance


class TestConformance(ArchitectureConformance):
    architecture = "jumprelu"
    training_recipe = "batchtopk"
    training_config_overrides: ClassVar[dict[str, Any]] = {"k": 4}
    nonnegative_parameters = ("threshold",)
