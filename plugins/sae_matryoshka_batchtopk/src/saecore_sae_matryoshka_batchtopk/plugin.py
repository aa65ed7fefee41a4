"""Entry point module: registers the matryoshka_batchtopk training recipe.

Like BatchTopK it has no inference architecture of its own: trained SAEs are saved as
``jumprelu`` SAEs. Kept light: the classes are imported inside the hook.
"""

from __future__ import annotations

from saecore import hookimpl
from saecore.hookspecs import RegisterTrainingRecipe


@hookimpl
def saecore_register_training_recipes(register: RegisterTrainingRecipe) -> None:
    from saecore_sae_matryoshka_batchtopk.config import MatryoshkaBatchTopKTrainingSAEConfig
    from saecore_sae_matryoshka_batchtopk.matryoshka_sae import MatryoshkaBatchTopKTrainingSAE

    register("matryoshka_batchtopk", MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig)
