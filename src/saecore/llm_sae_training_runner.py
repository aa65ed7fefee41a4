"""SAELens's ``sae_lens.llm_sae_training_runner`` path: the language-model training runner.

Provided by ``saecore-source-llm``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(
    __name__,
    (
        "LanguageModelSAETrainingRunner",
        "SAETrainingRunner",
    ),
    "saecore-source-llm",
)
