"""The core's built-in activation sources, registered through the same hook as any plugin."""

from __future__ import annotations

from saecore.hookspecs import RegisterSource, hookimpl


@hookimpl
def saecore_register_sources(register: RegisterSource) -> None:
    return None
