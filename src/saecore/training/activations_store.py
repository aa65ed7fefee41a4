"""``ActivationsStore`` under SAELens's module path (``sae_lens.training.activations_store``).

The store runs a language model, so ``saecore-source-llm`` provides it.
"""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(__name__, ("ActivationsStore",), "saecore-source-llm")
