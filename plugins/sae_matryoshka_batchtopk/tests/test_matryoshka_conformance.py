"""The saecore conformance kit, run against the matryoshka_batchtopk recipe and the jumprelu SAE it saves as."""

from __future__ import annotations

from typing import Any, ClassVar

from saecore.testing import ArchitectureConformance


class TestConformance(ArchitectureConformance):
    architecture = "jumprelu"
    training_recipe = "matryoshka_batchtopk"
    training_config_overrides: ClassVar[dict[str, Any]] = {"k": 4, "matryoshka_widths": [8, 24]}
    nonnegative_parameters = ("threshold",)
