"""Entry point module: registers the jumprelu architecture and its training recipe.

Kept light: the classes are imported inside the hooks, when the registry is built.
"""

from __future__ import annotations

from saecore import hookimpl
from saecore.hookspecs import RegisterArchitecture, RegisterExport, RegisterTrainingRecipe


@hookimpl
def saecore_register_architectures(register: RegisterArchitecture) -> None:
    from saecore_sae_jumprelu.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig

    register("jumprelu", JumpReLUSAE, JumpReLUSAEConfig)


@hookimpl
def saecore_register_training_recipes(register: RegisterTrainingRecipe) -> None:
    from saecore_sae_jumprelu.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig

    register("jumprelu", JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig)


@hookimpl
def saecore_register_exports(register: RegisterExport) -> None:
    register("saecore_sae_jumprelu.ste:JumpReLU")
    register("saecore_sae_jumprelu.ste:Step")
