"""SAELens's ``sae_lens.saes.matryoshka_batchtopk_sae`` path: the Matryoshka BatchTopK SAE classes.

Provided by ``saecore-sae-matryoshka-batchtopk``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(
    __name__,
    (
        "MatryoshkaBatchTopKTrainingSAE",
        "MatryoshkaBatchTopKTrainingSAEConfig",
    ),
    "saecore-sae-matryoshka-batchtopk",
)
