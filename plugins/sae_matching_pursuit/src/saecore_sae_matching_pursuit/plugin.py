"""Entry point module: registers the matching_pursuit architecture and its training recipe.

Kept light: the classes are imported inside the hooks, when the registry is built.
"""

from __future__ import annotations

from saecore import hookimpl
from saecore.hookspecs import RegisterArchitecture, RegisterTrainingRecipe


@hookimpl
def saecore_register_architectures(register: RegisterArchitecture) -> None:
    from saecore_sae_matching_pursuit.config import MatchingPursuitSAEConfig
    from saecore_sae_matching_pursuit.matching_pursuit_sae import MatchingPursuitSAE

    register("matching_pursuit", MatchingPursuitSAE, MatchingPursuitSAEConfig)


@hookimpl
def saecore_register_training_recipes(register: RegisterTrainingRecipe) -> None:
    from saecore_sae_matching_pursuit.config import MatchingPursuitTrainingSAEConfig
    from saecore_sae_matching_pursuit.matching_pursuit_sae import MatchingPursuitTrainingSAE

    register("matching_pursuit", MatchingPursuitTrainingSAE, MatchingPursuitTrainingSAEConfig)
