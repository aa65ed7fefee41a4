"""SAELens's ``sae_lens.saes.abstopk_sae`` path: the AbsTopK SAE classes.

Provided by ``saecore-sae-abstopk``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(
    __name__,
    (
        "AbsTopKSAE",
        "AbsTopKSAEConfig",
        "AbsTopKTrainingSAE",
        "AbsTopKTrainingSAEConfig",
    ),
    "saecore-sae-abstopk",
)
