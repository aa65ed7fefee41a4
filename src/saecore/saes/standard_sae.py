"""SAELens's ``sae_lens.saes.standard_sae`` path: the standard (ReLU) SAE classes.

Provided by ``saecore-sae-standard``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(
    __name__,
    (
        "StandardSAE",
        "StandardSAEConfig",
        "StandardTrainingSAE",
        "StandardTrainingSAEConfig",
    ),
    "saecore-sae-standard",
)
