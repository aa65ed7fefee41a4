"""The hook specifications every saecore plugin implements.

Registration hooks receive a ``register`` callback instead of returning values,
so the core validates each registration as it happens and can name the plugin
that made it (the style of simonw/llm and datasette). Hooks are called once,
when the registry is first built; nothing here is ever called in a training step.

A plugin module implements any subset of these with ``@saecore.hookimpl``::

    from saecore import hookimpl

    @hookimpl
    def saecore_register_architectures(register):
        register("topk", TopKSAE, TopKSAEConfig)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from saecore.config.sae_config import SAEConfig, TrainingSAEConfig
    from saecore.io.converters import SAEConverter
    from saecore.sae import SAE
    from saecore.sources.base import ActivationSource, SourceConfig
    from saecore.training_sae import TrainingSAE

PROJECT_NAME = "saecore"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class RegisterArchitecture(Protocol):
    def __call__(self, name: str, sae_class: type[SAE[Any]], config_class: type[SAEConfig]) -> None: ...


class RegisterTrainingRecipe(Protocol):
    def __call__(
        self,
        name: str,
        training_sae_class: type[TrainingSAE[Any]],
        training_config_class: type[TrainingSAEConfig],
    ) -> None: ...


class RegisterSource(Protocol):
    def __call__(
        self, name: str, source_class: type[ActivationSource], config_class: type[SourceConfig]
    ) -> None: ...


class RegisterConverter(Protocol):
    def __call__(self, name: str, converter: SAEConverter) -> None: ...


class RegisterExport(Protocol):
    def __call__(self, obj: Any, name: str | None = None) -> None: ...


class RegisterRelease(Protocol):
    def __call__(self, name: str, repo_id: str, saes: Mapping[str, dict[str, Any]], **fields: Any) -> None: ...


@hookspec
def saecore_register_architectures(register: RegisterArchitecture) -> None:
    """Register inference SAE architectures.

    Added in 0.1.0.

    :param register: call ``register(name, sae_class, config_class)`` once per
        architecture. ``name`` is the ``architecture`` field of cfg.json
        (``"standard"``, ``"topk"``, ...); ``sae_class`` subclasses
        :class:`saecore.SAE`; ``config_class`` subclasses :class:`saecore.SAEConfig`
        and its ``architecture()`` must return ``name``.
    """


@hookspec
def saecore_register_training_recipes(register: RegisterTrainingRecipe) -> None:
    """Register training recipes (a training SAE and its config).

    Added in 0.1.0.

    :param register: call ``register(name, training_sae_class, training_config_class)``.
        ``name`` is what ``saecore train --arch NAME`` accepts. The config class's
        ``inference_architecture()`` names the inference architecture the trained
        SAE is saved as; several recipes may save as one architecture (a BatchTopK
        recipe saves as ``jumprelu``).
    """


@hookspec
def saecore_register_sources(register: RegisterSource) -> None:
    """Register activation sources (where training batches come from).

    Added in 0.1.0.

    :param register: call ``register(name, source_class, config_class)``.
        ``source_class`` subclasses :class:`saecore.ActivationSource`;
        ``config_class`` subclasses :class:`saecore.SourceConfig`.
    """


@hookspec
def saecore_register_releases(register: RegisterRelease) -> None:
    """Register pretrained SAE releases for ``SAE.from_pretrained(release, sae_id)``.

    Added in 0.1.0.

    :param register: call ``register(name, repo_id, saes, **fields)``. ``saes`` maps
        each ``sae_id`` to a dict with at least ``path`` (the folder inside the
        repo) and optionally ``norm_scaling_factor``, ``l0``, ``variance_explained``,
        ``neuronpedia`` and ``hook_name`` (the last two reach the loaded SAE's metadata).
        A ``dict`` is copied; any other mapping is kept as given, so a large table can
        be read on its first lookup. ``fields`` may carry ``model``, ``conversion`` (a
        converter name), ``architectures`` (what its SAEs load as, for ``saecore
        releases``), ``config_overrides`` and ``config_facts`` (both applied to each
        loaded SAE's config, the overrides last), ``revision`` and ``links``.
    """


@hookspec
def saecore_register_converters(register: RegisterConverter) -> None:
    """Register readers of SAE formats other libraries publish (sparsify, Gemma Scope ...).

    Added in 0.1.0.

    :param register: call ``register(name, converter)``; ``converter`` is an instance of a
        :class:`saecore.io.converters.SAEConverter` subclass. ``name`` is what
        ``SAE.load_from_disk(path, converter=NAME)`` and a release's ``conversion`` field use.
    """


@hookspec
def saecore_register_exports(register: RegisterExport) -> None:
    """Make extra public objects importable as ``from saecore import NAME``.

    Added in 0.1.0. Classes registered through the other hooks are exported already;
    this is for the rest (a runner config, a runner).

    :param register: call ``register(obj)`` (exported under ``obj.__name__``) or
        ``register(obj, name)``. ``obj`` may be an import path ``"package.module:Name"``
        (exported as ``Name``): the module is imported only when someone asks for the name,
        for objects whose module needs a heavy or version-bound dependency.
    """
