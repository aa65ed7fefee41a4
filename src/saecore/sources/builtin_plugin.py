"""The core's built-in activation sources, registered through the same hook as any plugin.

Imports happen inside the hook, so importing this entry point costs nothing until the
registry is built.
"""

from __future__ import annotations

from saecore.hookspecs import RegisterSource, hookimpl


@hookimpl
def saecore_register_sources(register: RegisterSource) -> None:
    from saecore.sources.cached import CachedSource, CachedSourceConfig
    from saecore.sources.in_memory import TensorSource, TensorSourceConfig
    from saecore.sources.synthetic import SyntheticSource, SyntheticSourceConfig
    from saecore.sources.synthetic_transcoder import SyntheticTranscoderSource, SyntheticTranscoderSourceConfig

    register("synthetic", SyntheticSource, SyntheticSourceConfig)
    register("synthetic_transcoder", SyntheticTranscoderSource, SyntheticTranscoderSourceConfig)
    register("cached", CachedSource, CachedSourceConfig)
    register("tensor", TensorSource, TensorSourceConfig)
