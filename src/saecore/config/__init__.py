"""Pydantic config models shared by the core and every plugin.

SAELens's ``sae_lens.config`` runner configs import from here too; they configure a
language model, so ``saecore-source-llm`` provides them.
"""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(
    __name__,
    ("CacheActivationsRunnerConfig", "LanguageModelSAERunnerConfig", "PretokenizeRunnerConfig"),
    "saecore-source-llm",
)
