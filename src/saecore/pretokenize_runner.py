"""SAELens's ``sae_lens.pretokenize_runner`` path: the pretokenizing runner.

Provided by ``saecore-source-llm``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(__name__, ("PretokenizeRunner", "pretokenize_runner"), "saecore-source-llm")
