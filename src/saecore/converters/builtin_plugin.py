"""The core's built-in converters, registered through the same hook as any plugin."""

from __future__ import annotations

from saecore.hookspecs import RegisterConverter, hookimpl


@hookimpl
def saecore_register_converters(register: RegisterConverter) -> None:
    from saecore.io.converters import SAELensConverter

    register("sae_lens", SAELensConverter())
