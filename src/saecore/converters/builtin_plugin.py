"""The core's built-in converters and release directory, registered through the same hooks as any plugin."""

from __future__ import annotations

from saecore.hookspecs import RegisterConverter, RegisterRelease, hookimpl


@hookimpl
def saecore_register_converters(register: RegisterConverter) -> None:
    from saecore.converters.connor_rob_hook_z import ConnorRobHookZConverter
    from saecore.converters.dictionary_learning import DictionaryLearningConverter
    from saecore.converters.gemma_scope import GemmaScopeConverter
    from saecore.converters.gemma_scope_2 import GemmaScope2Converter
    from saecore.converters.linear_checkpoints import DeepSeekR1Converter, GoodfireConverter
    from saecore.converters.llama_scope import LlamaScopeConverter, LlamaScopeR1DistillConverter
    from saecore.converters.qwen_scope import QwenScopeConverter
    from saecore.converters.sparsify import SparsifyConverter
    from saecore.io.converters import SAELensConverter

    register("sae_lens", SAELensConverter())
    register("sparsify", SparsifyConverter())
    register("dictionary_learning", DictionaryLearningConverter())
    register("gemma_scope", GemmaScopeConverter())
    register("gemma_3", GemmaScope2Converter())
    register("qwen_scope", QwenScopeConverter())
    register("llama_scope", LlamaScopeConverter())
    register("llama_scope_r1_distill", LlamaScopeR1DistillConverter())
    register("goodfire", GoodfireConverter())
    register("deepseek_r1", DeepSeekR1Converter())
    register("connor_rob_hook_z", ConnorRobHookZConverter())


@hookimpl
def saecore_register_releases(register: RegisterRelease) -> None:
    from saecore.converters.release_directory import register_release_directory

    register_release_directory(register)
