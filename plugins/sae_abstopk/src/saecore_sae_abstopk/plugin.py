"""Entry point module: registers the abstopk architecture and its training recipe.

Kept light: the classes are imported inside the hooks, when the registry is built.
"""

from __future__ import annotations

from saecore import hookimpl
from saecore.hookspecs import RegisterArchitecture, RegisterTrainingRecipe


@hookimpl
def saecore_register_architectures(register: RegisterArchitecture) -> None:
    from saecore_sae_abstopk.abstopk_sae import AbsTopKSAE
    from saecore_sae_abstopk.config import AbsTopKSAEConfig

    register("abstopk", AbsTopKSAE, AbsTopKSAEConfig)


@hookimpl
def saecore_register_training_recipes(register: RegisterTrainingRecipe) -> None:
    from saecore_sae_abstopk.abstopk_training_sae import AbsTopKTrainingSAE
    from saecore_sae_abstopk.config import AbsTopKTrainingSAEConfig

    register("abstopk", AbsTopKTrainingSAE, AbsTopKTrainingSAEConfig)
