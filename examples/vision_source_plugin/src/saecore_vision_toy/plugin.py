"""Entry point module: registers the ``vision_toy`` activation source.

Kept light: torch and the model are imported inside the hook, when the registry is built.
"""

from __future__ import annotations

from saecore import hookimpl
from saecore.hookspecs import RegisterSource


@hookimpl
def saecore_register_sources(register: RegisterSource) -> None:
    from saecore_vision_toy.source import VisionToySource, VisionToySourceConfig

    register("vision_toy", VisionToySource, VisionToySourceConfig)
