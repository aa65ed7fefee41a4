"""Exceptions raised by saecore.

Every error here is written for a person reading a terminal: it names the thing
that was wrong (a field, a file, a plugin) and what would have been accepted.
The CLI prints ``str(error)`` on one line and exits non-zero; only ``--debug``
shows the traceback.
"""

from __future__ import annotations


class SaecoreError(Exception):
    """Base class of every error saecore raises on purpose."""


class PluginLoadError(SaecoreError):
    """A plugin's entry point raised while being imported or registered."""


class DuplicateNameError(SaecoreError, ValueError):
    """Two plugins registered the same name in the same namespace.

    Also a ValueError, which is what SAELens's ``register_sae_class`` raises for a name
    registered twice and what callers written for SAELens catch.
    """


class UnknownNameError(SaecoreError, LookupError):
    """A name (architecture, training recipe, source, release) that nothing provides."""


class UnknownReleaseError(UnknownNameError, ValueError):
    """A release (or an sae_id in it) that no registered release directory lists.

    Also a ValueError, which is what SAELens's ``SAE.from_pretrained`` raises here and what
    callers written for SAELens catch.
    """


class ConfigError(SaecoreError, ValueError):
    """A configuration value that cannot be used."""


class SAEFileError(SaecoreError, OSError):
    """A file on disk that is missing, corrupt, or disagrees with its config."""


class UnsafeFoldError(ConfigError, NotImplementedError):
    """A fold that would change an SAE's outputs, such as which latents a selection by magnitude keeps.

    Also a NotImplementedError, which is what SAELens raises here and what callers written
    for SAELens catch.
    """
