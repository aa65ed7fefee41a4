"""Entry point module: registers the temporal architecture and the ``temporal`` published format.

Kept light: the classes are imported inside the hooks, when the registry is built.
"""

from __future__ import annotations

from saecore import hookimpl
from saecore.hookspecs import RegisterArchitecture, RegisterConverter


@hookimpl
def saecore_register_architectures(register: RegisterArchitecture) -> None:
    from saecore_sae_temporal.config import TemporalSAEConfig
    from saecore_sae_temporal.temporal_sae import TemporalSAE

    register("temporal", TemporalSAE, TemporalSAEConfig)


@hookimpl
def saecore_register_converters(register: RegisterConverter) -> None:
    from saecore_sae_temporal.converter import TemporalConverter

    register("temporal", TemporalConverter())
