"""Entry point module: registers the topk architecture and its training recipe.

Kept light: the classes are imported inside the hooks, when the registry is built.
"""

from __future__ import annotations

from saecore import hookimpl
from saecore.hookspecs import RegisterArchitecture, RegisterTrainingRecipe


@hookimpl
def saecore_register_architectures(register: RegisterArchitecture) -> None:
    from saecore_sae_topk.config import TopKSAEConfig
    from saecore_sae_topk.topk_sae import TopKSAE

    register("topk", TopKSAE, TopKSAEConfig)


@hookimpl
def saecore_register_training_recipes(register: RegisterTrainingRecipe) -> None:
    from saecore_sae_topk.config import TopKTrainingSAEConfig
    from saecore_sae_topk.topk_training_sae import TopKTrainingSAE

    register("topk", TopKTrainingSAE, TopKTrainingSAEConfig)
