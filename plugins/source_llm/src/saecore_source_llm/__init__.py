"""Language-model activations for saecore, and the SAELens-style v6 training runner.

The names below are imported on first use, so importing this package (which the entry
point does) stays cheap; transformer_lens, transformers and datasets are imported only
when a model is built or a dataset read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saecore.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from saecore_source_llm.activations_store import ActivationsStore as ActivationsStore
    from saecore_source_llm.cache_activations_runner import CacheActivationsRunner as CacheActivationsRunner
    from saecore_source_llm.cache_activations_runner import (
        CacheActivationsRunnerConfig as CacheActivationsRunnerConfig,
    )
    from saecore_source_llm.config import LLMSourceConfig as LLMSourceConfig
    from saecore_source_llm.evals import EvalConfig as EvalConfig
    from saecore_source_llm.evals import run_evals as run_evals
    from saecore_source_llm.feature_tools import TopKFeatures as TopKFeatures
    from saecore_source_llm.feature_tools import ablate_features as ablate_features
    from saecore_source_llm.feature_tools import clamp_features as clamp_features
    from saecore_source_llm.feature_tools import feature_activation_scale as feature_activation_scale
    from saecore_source_llm.feature_tools import feature_activations as feature_activations
    from saecore_source_llm.feature_tools import feature_attribution as feature_attribution
    from saecore_source_llm.feature_tools import steer_feature as steer_feature
    from saecore_source_llm.feature_tools import top_k_features as top_k_features
    from saecore_source_llm.hf_splice import splice as splice
    from saecore_source_llm.multi_runner import MultiSAETrainingRunner as MultiSAETrainingRunner
    from saecore_source_llm.multi_runner import MultiSAETrainingRunnerConfig as MultiSAETrainingRunnerConfig
    from saecore_source_llm.multi_sae_evaluator import MultiSAEEvaluator as MultiSAEEvaluator
    from saecore_source_llm.pretokenize import PretokenizeRunner as PretokenizeRunner
    from saecore_source_llm.pretokenize import PretokenizeRunnerConfig as PretokenizeRunnerConfig
    from saecore_source_llm.pretokenize import pretokenize_runner as pretokenize_runner
    from saecore_source_llm.runner import LanguageModelSAERunnerConfig as LanguageModelSAERunnerConfig
    from saecore_source_llm.runner import LanguageModelSAETrainingRunner as LanguageModelSAETrainingRunner
    from saecore_source_llm.runner import SAETrainingRunner as SAETrainingRunner
    from saecore_source_llm.source import LLMSource as LLMSource

_EXPORTS = {
    "CacheActivationsRunner": "saecore_source_llm.cache_activations_runner",
    "CacheActivationsRunnerConfig": "saecore_source_llm.cache_activations_runner",
    "ActivationsStore": "saecore_source_llm.activations_store",
    "EvalConfig": "saecore_source_llm.evals",
    "run_evals": "saecore_source_llm.evals",
    "TopKFeatures": "saecore_source_llm.feature_tools",
    "ablate_features": "saecore_source_llm.feature_tools",
    "clamp_features": "saecore_source_llm.feature_tools",
    "feature_activation_scale": "saecore_source_llm.feature_tools",
    "feature_activations": "saecore_source_llm.feature_tools",
    "feature_attribution": "saecore_source_llm.feature_tools",
    "steer_feature": "saecore_source_llm.feature_tools",
    "top_k_features": "saecore_source_llm.feature_tools",
    "HookedSAETransformer": "saecore_source_llm.hooked_sae_transformer",
    "LLMSource": "saecore_source_llm.source",
    "PretokenizeRunner": "saecore_source_llm.pretokenize",
    "PretokenizeRunnerConfig": "saecore_source_llm.pretokenize",
    "pretokenize_runner": "saecore_source_llm.pretokenize",
    "LLMSourceConfig": "saecore_source_llm.config",
    "LanguageModelSAERunnerConfig": "saecore_source_llm.runner",
    "MultiSAEEvaluator": "saecore_source_llm.multi_sae_evaluator",
    "LanguageModelSAETrainingRunner": "saecore_source_llm.runner",
    "MultiSAETrainingRunner": "saecore_source_llm.multi_runner",
    "MultiSAETrainingRunnerConfig": "saecore_source_llm.multi_runner",
    "SAETrainingRunner": "saecore_source_llm.runner",
    "SAETransformerBridge": "saecore_source_llm.sae_transformer_bridge",
    "splice": "saecore_source_llm.hf_splice",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
