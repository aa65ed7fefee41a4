"""SAELens's ``sae_lens.analysis.hooked_sae_transformer`` path: ``HookedSAETransformer`` (TransformerLens 3).

Provided by ``saecore-source-llm``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(__name__, ("HookedSAETransformer",), "saecore-source-llm")
