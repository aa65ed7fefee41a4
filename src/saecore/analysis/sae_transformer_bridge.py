"""SAELens's ``sae_lens.analysis.sae_transformer_bridge`` path: ``SAETransformerBridge`` (TransformerLens 4).

Provided by ``saecore-source-llm``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(__name__, ("SAETransformerBridge",), "saecore-source-llm")
