"""The saecore conformance kit, run against the topk architecture and training recipe.

Rescaling is on because the kit checks that ``fold_W_dec_norm`` keeps outputs, which a
TopK SAE ranking by plain ``h`` cannot do (it refuses to fold; tested separately).
"""

from saecore.testing import ArchitectureConformance


class TestConformance(ArchitectureConformance):
    architecture = "topk"
    training_recipe = "topk"
    config_overrides = {"k": 4, "rescale_acts_by_decoder_norm": True}  # noqa: RUF012 (read as a class attribute)
