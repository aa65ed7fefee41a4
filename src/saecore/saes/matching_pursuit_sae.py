"""SAELens's ``sae_lens.saes.matching_pursuit_sae`` path: the matching-pursuit SAE classes.

Provided by ``saecore-sae-matching-pursuit``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(
    __name__,
    (
        "MatchingPursuitSAE",
        "MatchingPursuitSAEConfig",
        "MatchingPursuitTrainingSAE",
        "MatchingPursuitTrainingSAEConfig",
    ),
    "saecore-sae-matching-pursuit",
)
