"""Entry point module: registers the ``llm`` source, the language-model runner, HookedSAETransformer,
SAETransformerBridge, splice, the feature tools, SAELens's ActivationsStore, its evals API and
MultiSAEEvaluator.

Kept light: nothing here imports transformer_lens, transformers or datasets; the source
imports them when it builds a model or reads a dataset.
"""

from __future__ import annotations

from saecore import hookimpl
from saecore.evals import SAELENS_EVALS_NAMES
from saecore.hookspecs import RegisterExport, RegisterSource


@hookimpl
def saecore_register_sources(register: RegisterSource) -> None:
    from saecore_source_llm.config import LLMSourceConfig
    from saecore_source_llm.source import LLMSource

    register("llm", LLMSource, LLMSourceConfig)


@hookimpl
def saecore_register_exports(register: RegisterExport) -> None:
    from saecore_source_llm.runner import (
        LanguageModelSAERunnerConfig,
        LanguageModelSAETrainingRunner,
        SAETrainingRunner,
    )

    register(LanguageModelSAERunnerConfig)
    register(LanguageModelSAETrainingRunner)
    register(SAETrainingRunner)
    register("saecore_source_llm.multi_runner:MultiSAETrainingRunner")
    register("saecore_source_llm.multi_runner:MultiSAETrainingRunnerConfig")
    register("saecore_source_llm.hooked_sae_transformer:HookedSAETransformer")
    register("saecore_source_llm.cache_activations_runner:CacheActivationsRunner")
    register("saecore_source_llm.cache_activations_runner:CacheActivationsRunnerConfig")
    for name in ("PretokenizeRunner", "PretokenizeRunnerConfig", "pretokenize_runner"):
        register(f"saecore_source_llm.pretokenize:{name}")
    register("saecore_source_llm.sae_transformer_bridge:SAETransformerBridge")
    register("saecore_source_llm.hf_splice:splice")
    for name in ("TopKFeatures", "ablate_features", "clamp_features", "feature_activation_scale",
                 "feature_activations", "feature_attribution", "steer_feature", "top_k_features"):
        register(f"saecore_source_llm.feature_tools:{name}")
    register("saecore_source_llm.activations_store:ActivationsStore")
    register("saecore_source_llm.multi_sae_evaluator:MultiSAEEvaluator")
    for name in SAELENS_EVALS_NAMES:
        register(f"saecore_source_llm.evals:{name}")
