"""saecore.testing: the conformance kit any architecture plugin runs in its own tests.

Subclass :class:`ArchitectureConformance` in a test module, name your architecture (and
training recipe), and pytest collects every check::

    from saecore.testing import ArchitectureConformance

    class TestConformance(ArchitectureConformance):
        architecture = "topk"
        training_recipe = "topk"
        config_overrides = {"k": 4}
"""

from saecore.testing.architecture_conformance import ArchitectureConformance

__all__ = ["ArchitectureConformance"]
