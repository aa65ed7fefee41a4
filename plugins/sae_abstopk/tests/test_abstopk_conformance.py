"""The saecore conformance kit, run against the abstopk architecture and training recipe.

Ranking by plain ``|h|`` refuses ``fold_W_dec_norm`` (folding would change which k latents
are kept); with rescaling on, folding keeps the outputs.
"""

from saecore.errors import UnsafeFoldError
from saecore.testing import ArchitectureConformance


class TestConformance(ArchitectureConformance):
    architecture = "abstopk"
    training_recipe = "abstopk"
    config_overrides = {"k": 4, "rescale_acts_by_decoder_norm": True}  # noqa: RUF012 (read as a class attribute)


class TestConformanceRankingByPlainScores(ArchitectureConformance):
    architecture = "abstopk"
    config_overrides = {"k": 4}  # noqa: RUF012 (read as a class attribute)
    refused_operations = {"fold_W_dec_norm": UnsafeFoldError}  # noqa: RUF012 (read as a class attribute)
