"""The core's built-in converters and release directory, registered through the same hooks as any plugin."""

from __future__ import annotations

from saecore.hookspecs import RegisterConverter, RegisterRelease, hookimpl


@hookimpl
def saecore_register_converters(register: RegisterConverter) -> None:
    from saecore.converters.dictionary_learning import DictionaryLearningConverter
    from saecore.converters.gemma_scope import GemmaScopeConverter
    from saecore.converters.sparsify import SparsifyConverter
    from saecore.io.converters import SAELensConverter

    register("sae_lens", SAELensConverter())
    register("sparsify", SparsifyConverter())
    register("dictionary_learning", DictionaryLearningConverter())
    register("gemma_scope", GemmaScopeConverter())


@hookimpl
def saecore_register_releases(register: RegisterRelease) -> None:
    from saecore.converters.release_directory import register_release_directory

    register_release_directory(register)
