"""SAELens's ``sae_lens.saes.batchtopk_sae`` path: the BatchTopK SAE classes.

Provided by ``saecore-sae-batchtopk``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(
    __name__,
    (
        "BatchTopKTrainingSAE",
        "BatchTopKTrainingSAEConfig",
    ),
    "saecore-sae-batchtopk",
)
