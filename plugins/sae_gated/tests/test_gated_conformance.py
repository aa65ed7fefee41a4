"""The saecore conformance kit, run against the gated architecture and training recipe."""

from __future__ import annotations

from typing import Any, ClassVar

from saecore.testing import ArchitectureConformance


class TestConformance(ArchitectureConformance):
    architecture = "gated"
    training_recipe = "gated"
    config_overrides: ClassVar[dict[str, Any]] = {}
