from saecore.testing import ArchitectureConformance


class TestStandardConformance(ArchitectureConformance):
    architecture = "standard"
    training_recipe = "standard"
