"""SAELens's ``sae_lens.saes.topk_sae`` path: the TopK SAE classes.

Provided by ``saecore-sae-topk``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(
    __name__,
    (
        "TopKSAE",
        "TopKSAEConfig",
        "TopKTrainingSAE",
        "TopKTrainingSAEConfig",
    ),
    "saecore-sae-topk",
)
