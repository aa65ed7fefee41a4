"""The saecore conformance kit, run against the jumprelu architecture and training recipe."""

from __future__ import annotations

from typing import Any, ClassVar

from saecore.testing import ArchitectureConformance


class TestConformance(ArchitectureConformance):
    architecture = "jumprelu"
    training_recipe = "jumprelu"
    config_overrides: ClassVar[dict[str, Any]] = {}
    nonnegative_parameters = ("threshold",)
