"""Entry point module: registers the batchtopk training recipe.

There is no ``batchtopk`` inference architecture: a trained BatchTopK SAE is saved as a
``jumprelu`` SAE (provided by saecore-sae-jumprelu), so it loads without this package.
Kept light: the classes are imported inside the hook, when the registry is built.
"""

from __future__ import annotations

from saecore import hookimpl
from saecore.hookspecs import RegisterTrainingRecipe


@hookimpl
def saecore_register_training_recipes(register: RegisterTrainingRecipe) -> None:
    from saecore_sae_batchtopk.batchtopk_sae import BatchTopKTrainingSAE
    from saecore_sae_batchtopk.config import BatchTopKTrainingSAEConfig

    register("batchtopk", BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig)
