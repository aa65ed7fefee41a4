"""SAELens's ``sae_lens.saes.gated_sae`` path: the gated SAE classes.

Provided by ``saecore-sae-gated``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(
    __name__,
    (
        "GatedSAE",
        "GatedSAEConfig",
        "GatedTrainingSAE",
        "GatedTrainingSAEConfig",
    ),
    "saecore-sae-gated",
)
