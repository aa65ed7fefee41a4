"""saecore.testing: the conformance kit every plugin runs in its own tests.

Subclass a suite in a test module, name what your plugin registers, and pytest collects
every check::

    from saecore.testing import ArchitectureConformance, SourceConformance

    class TestConformance(ArchitectureConformance):
        architecture = "topk"
        training_recipe = "topk"
        config_overrides = {"k": 4}

    class TestMySource(SourceConformance):
        source = "vision_toy"
        config = {"image_size": 16}

Fixtures for plugin tests (``saecore_registry``, ``saecore_register``,
``saecore_only_plugins``) come from :mod:`saecore.testing.pytest_plugin`, which pytest
loads through its ``pytest11`` entry point.
"""

from saecore.testing.architecture_conformance import ArchitectureConformance
from saecore.testing.source_conformance import SourceConformance

__all__ = ["ArchitectureConformance", "SourceConformance"]
