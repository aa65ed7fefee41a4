"""SAELens's ``sae_lens.multi_sae_training_runner`` path: training several SAEs on one language model's activations.

Provided by ``saecore-source-llm``.
"""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(
    __name__, ("MultiSAETrainingRunner", "MultiSAETrainingRunnerConfig"), "saecore-source-llm"
)
