"""The saecore conformance kit, run against the matching_pursuit architecture and training recipe.

The encoder is the decoder, so rescaling decoder rows changes which latents the pursuit
picks: ``fold_W_dec_norm`` is refused, as in SAELens.
"""

from saecore.errors import UnsafeFoldError
from saecore.testing import ArchitectureConformance


class TestConformance(ArchitectureConformance):
    architecture = "matching_pursuit"
    training_recipe = "matching_pursuit"
    refused_operations = {"fold_W_dec_norm": UnsafeFoldError}  # noqa: RUF012 (read as a class attribute)
