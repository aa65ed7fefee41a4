"""SAELens's ``sae_lens.cache_activations_runner`` path: the activation-caching runner.

Provided by ``saecore-source-llm``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(__name__, ("CacheActivationsRunner",), "saecore-source-llm")
