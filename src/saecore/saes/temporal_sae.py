"""SAELens's ``sae_lens.saes.temporal_sae`` path: the temporal SAE classes.

Provided by ``saecore-sae-temporal``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(__name__, ("TemporalSAE", "TemporalSAEConfig"), "saecore-sae-temporal")
