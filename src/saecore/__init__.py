"""saecore: train, load and evaluate sparse autoencoders, with every architecture a plugin.

Core names are imported on first access (PEP 562), so that ``import saecore`` loads
neither the training loop nor torch until a name needs it (``saecore --version`` stays
fast, and so do the plugins' entry points, which import saecore for ``hookimpl``). The
core's generic runner is
``saecore.training.TrainingRunner``; the top-level name ``SAETrainingRunner`` means what
it means in SAELens: the LLM plugin's deprecated alias of ``LanguageModelSAETrainingRunner``.

Classes that plugins provide (``TopKSAE``, ``StandardTrainingSAEConfig``, ...) are
resolved lazily through the registry on first access; when the plugin is missing, the
ImportError names the package to install. The ``TYPE_CHECKING`` imports below let a
type checker resolve those names; at run time the core never imports a plugin.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from saecore.errors import (
    ConfigError,
    DuplicateNameError,
    PluginLoadError,
    SaecoreError,
    SAEFileError,
    UnknownNameError,
)
from saecore.hookspecs import hookimpl
from saecore.lazy_exports import lazy_exports
from saecore.plugin_exports import plugin_export
from saecore.registry import (
    get_registry,
    get_sae_class,
    get_sae_training_class,
    register_sae_class,
    register_sae_training_class,
)
from saecore.version import __version__

if TYPE_CHECKING:
    from saecore_sae_abstopk import AbsTopKSAE as AbsTopKSAE
    from saecore_sae_abstopk import AbsTopKSAEConfig as AbsTopKSAEConfig
    from saecore_sae_abstopk import AbsTopKTrainingSAE as AbsTopKTrainingSAE
    from saecore_sae_abstopk import AbsTopKTrainingSAEConfig as AbsTopKTrainingSAEConfig
    from saecore_sae_batchtopk import BatchTopKTrainingSAE as BatchTopKTrainingSAE
    from saecore_sae_batchtopk import BatchTopKTrainingSAEConfig as BatchTopKTrainingSAEConfig
    from saecore_sae_gated import GatedSAE as GatedSAE
    from saecore_sae_gated import GatedSAEConfig as GatedSAEConfig
    from saecore_sae_gated import GatedTrainingSAE as GatedTrainingSAE
    from saecore_sae_gated import GatedTrainingSAEConfig as GatedTrainingSAEConfig
    from saecore_sae_jumprelu import JumpReLUSAE as JumpReLUSAE
    from saecore_sae_jumprelu import JumpReLUSAEConfig as JumpReLUSAEConfig
    from saecore_sae_jumprelu import JumpReLUTrainingSAE as JumpReLUTrainingSAE
    from saecore_sae_jumprelu import JumpReLUTrainingSAEConfig as JumpReLUTrainingSAEConfig
    from saecore_sae_matching_pursuit import MatchingPursuitSAE as MatchingPursuitSAE
    from saecore_sae_matching_pursuit import MatchingPursuitSAEConfig as MatchingPursuitSAEConfig
    from saecore_sae_matching_pursuit import MatchingPursuitTrainingSAE as MatchingPursuitTrainingSAE
    from saecore_sae_matching_pursuit import MatchingPursuitTrainingSAEConfig as MatchingPursuitTrainingSAEConfig
    from saecore_sae_matryoshka_batchtopk import MatryoshkaBatchTopKTrainingSAE as MatryoshkaBatchTopKTrainingSAE
    from saecore_sae_matryoshka_batchtopk import (
        MatryoshkaBatchTopKTrainingSAEConfig as MatryoshkaBatchTopKTrainingSAEConfig,
    )
    from saecore_sae_standard import StandardSAE as StandardSAE
    from saecore_sae_standard import StandardSAEConfig as StandardSAEConfig
    from saecore_sae_standard import StandardTrainingSAE as StandardTrainingSAE
    from saecore_sae_standard import StandardTrainingSAEConfig as StandardTrainingSAEConfig
    from saecore_sae_temporal import TemporalSAE as TemporalSAE
    from saecore_sae_temporal import TemporalSAEConfig as TemporalSAEConfig
    from saecore_sae_topk import TopKSAE as TopKSAE
    from saecore_sae_topk import TopKSAEConfig as TopKSAEConfig
    from saecore_sae_topk import TopKTrainingSAE as TopKTrainingSAE
    from saecore_sae_topk import TopKTrainingSAEConfig as TopKTrainingSAEConfig
    from saecore_source_llm import ActivationsStore as ActivationsStore
    from saecore_source_llm import CacheActivationsRunner as CacheActivationsRunner
    from saecore_source_llm import CacheActivationsRunnerConfig as CacheActivationsRunnerConfig
    from saecore_source_llm import EvalConfig as EvalConfig
    from saecore_source_llm import HookedSAETransformer as HookedSAETransformer
    from saecore_source_llm import LanguageModelSAERunnerConfig as LanguageModelSAERunnerConfig
    from saecore_source_llm import LanguageModelSAETrainingRunner as LanguageModelSAETrainingRunner
    from saecore_source_llm import LLMSource as LLMSource
    from saecore_source_llm import LLMSourceConfig as LLMSourceConfig
    from saecore_source_llm import MultiSAEEvaluator as MultiSAEEvaluator
    from saecore_source_llm import MultiSAETrainingRunner as MultiSAETrainingRunner
    from saecore_source_llm import MultiSAETrainingRunnerConfig as MultiSAETrainingRunnerConfig
    from saecore_source_llm import PretokenizeRunner as PretokenizeRunner
    from saecore_source_llm import PretokenizeRunnerConfig as PretokenizeRunnerConfig
    from saecore_source_llm import SAETrainingRunner as SAETrainingRunner
    from saecore_source_llm import SAETransformerBridge as SAETransformerBridge
    from saecore_source_llm import TopKFeatures as TopKFeatures
    from saecore_source_llm import ablate_features as ablate_features
    from saecore_source_llm import clamp_features as clamp_features
    from saecore_source_llm import feature_activation_scale as feature_activation_scale
    from saecore_source_llm import feature_activations as feature_activations
    from saecore_source_llm import feature_attribution as feature_attribution
    from saecore_source_llm import pretokenize_runner as pretokenize_runner
    from saecore_source_llm import run_evals as run_evals
    from saecore_source_llm import splice as splice
    from saecore_source_llm import steer_feature as steer_feature
    from saecore_source_llm import top_k_features as top_k_features
    from saecore_transcoders import JumpReLUSkipTrainingTranscoder as JumpReLUSkipTrainingTranscoder
    from saecore_transcoders import JumpReLUSkipTrainingTranscoderConfig as JumpReLUSkipTrainingTranscoderConfig
    from saecore_transcoders import JumpReLUSkipTranscoder as JumpReLUSkipTranscoder
    from saecore_transcoders import JumpReLUSkipTranscoderConfig as JumpReLUSkipTranscoderConfig
    from saecore_transcoders import JumpReLUTrainingTranscoder as JumpReLUTrainingTranscoder
    from saecore_transcoders import JumpReLUTrainingTranscoderConfig as JumpReLUTrainingTranscoderConfig
    from saecore_transcoders import JumpReLUTranscoder as JumpReLUTranscoder
    from saecore_transcoders import JumpReLUTranscoderConfig as JumpReLUTranscoderConfig
    from saecore_transcoders import SkipTrainingTranscoder as SkipTrainingTranscoder
    from saecore_transcoders import SkipTrainingTranscoderConfig as SkipTrainingTranscoderConfig
    from saecore_transcoders import SkipTranscoder as SkipTranscoder
    from saecore_transcoders import SkipTranscoderConfig as SkipTranscoderConfig
    from saecore_transcoders import TopKSkipTrainingTranscoder as TopKSkipTrainingTranscoder
    from saecore_transcoders import TopKSkipTrainingTranscoderConfig as TopKSkipTrainingTranscoderConfig
    from saecore_transcoders import TopKSkipTranscoder as TopKSkipTranscoder
    from saecore_transcoders import TopKSkipTranscoderConfig as TopKSkipTranscoderConfig
    from saecore_transcoders import TopKTrainingTranscoder as TopKTrainingTranscoder
    from saecore_transcoders import TopKTrainingTranscoderConfig as TopKTrainingTranscoderConfig
    from saecore_transcoders import TopKTranscoder as TopKTranscoder
    from saecore_transcoders import TopKTranscoderConfig as TopKTranscoderConfig
    from saecore_transcoders import TrainingTranscoder as TrainingTranscoder
    from saecore_transcoders import TrainingTranscoderConfig as TrainingTranscoderConfig
    from saecore_transcoders import Transcoder as Transcoder
    from saecore_transcoders import TranscoderConfig as TranscoderConfig

    from saecore.config.metadata import SAEMetadata as SAEMetadata
    from saecore.config.sae_config import SAEConfig as SAEConfig
    from saecore.config.sae_config import TrainingSAEConfig as TrainingSAEConfig
    from saecore.config.training_presets import TrainingPresets as TrainingPresets
    from saecore.hook_points import HookPoint as HookPoint
    from saecore.io.pretrained_loaders import PretrainedSaeDiskLoader as PretrainedSaeDiskLoader
    from saecore.io.pretrained_loaders import PretrainedSaeHuggingfaceLoader as PretrainedSaeHuggingfaceLoader
    from saecore.loading.pretrained_saes_directory import PretrainedSAELookup as PretrainedSAELookup
    from saecore.loading.pretrained_saes_directory import get_config_overrides as get_config_overrides
    from saecore.loading.pretrained_saes_directory import get_norm_scaling_factor as get_norm_scaling_factor
    from saecore.loading.pretrained_saes_directory import (
        get_pretrained_saes_directory as get_pretrained_saes_directory,
    )
    from saecore.loading.pretrained_saes_directory import get_releases_for_repo_id as get_releases_for_repo_id
    from saecore.loading.pretrained_saes_directory import (
        get_repo_id_and_folder_name as get_repo_id_and_folder_name,
    )
    from saecore.publishing import upload_saes_to_huggingface as upload_saes_to_huggingface
    from saecore.sae import SAE as SAE
    from saecore.sources.base import ActivationSource as ActivationSource
    from saecore.sources.base import SourceConfig as SourceConfig
    from saecore.training import LoggingConfig as LoggingConfig
    from saecore.training import SAESweepConfig as SAESweepConfig
    from saecore.training import SAESweepRunner as SAESweepRunner
    from saecore.training import SAETrainer as SAETrainer
    from saecore.training import SweepMember as SweepMember
    from saecore.training import TrainerConfig as TrainerConfig
    from saecore.training import TrainingRunnerConfig as TrainingRunnerConfig
    from saecore.training_sae import TrainCoefficientConfig as TrainCoefficientConfig
    from saecore.training_sae import TrainingSAE as TrainingSAE
    from saecore.training_sae import TrainStepInput as TrainStepInput
    from saecore.training_sae import TrainStepOutput as TrainStepOutput

_LAZY_EXPORTS = {
    "SAEMetadata": "saecore.config.metadata",
    "SAEConfig": "saecore.config.sae_config",
    "TrainingSAEConfig": "saecore.config.sae_config",
    "TrainingPresets": "saecore.config.training_presets",
    "PretrainedSaeDiskLoader": "saecore.io.pretrained_loaders",
    "PretrainedSaeHuggingfaceLoader": "saecore.io.pretrained_loaders",
    "HookPoint": "saecore.hook_points",
    "SAE": "saecore.sae",
    "ActivationSource": "saecore.sources.base",
    "SourceConfig": "saecore.sources.base",
    **dict.fromkeys(("TrainCoefficientConfig", "TrainingSAE", "TrainStepInput", "TrainStepOutput"),
                    "saecore.training_sae"),
    "upload_saes_to_huggingface": "saecore.publishing",
    **dict.fromkeys(("LoggingConfig", "SAESweepConfig", "SAESweepRunner", "SAETrainer", "SweepMember",
                     "TrainerConfig", "TrainingRunnerConfig"), "saecore.training"),
    **dict.fromkeys(("PretrainedSAELookup", "get_config_overrides", "get_norm_scaling_factor",
                     "get_pretrained_saes_directory", "get_releases_for_repo_id", "get_repo_id_and_folder_name"),
                    "saecore.loading.pretrained_saes_directory"),
}
_lazy_attribute, _module_dir = lazy_exports(__name__, _LAZY_EXPORTS)

__all__ = [
    "SAE",
    "ActivationSource",
    "ConfigError",
    "DuplicateNameError",
    "HookPoint",
    "LoggingConfig",
    "PluginLoadError",
    "PretrainedSaeDiskLoader",
    "PretrainedSaeHuggingfaceLoader",
    "SAEConfig",
    "SAEFileError",
    "SAEMetadata",
    "SAESweepConfig",
    "SAESweepRunner",
    "SAETrainer",
    "SaecoreError",
    "SourceConfig",
    "SweepMember",
    "TrainCoefficientConfig",
    "TrainStepInput",
    "TrainStepOutput",
    "TrainerConfig",
    "TrainingPresets",
    "TrainingRunnerConfig",
    "TrainingSAE",
    "TrainingSAEConfig",
    "UnknownNameError",
    "__version__",
    "get_registry",
    "get_sae_class",
    "get_sae_training_class",
    "hookimpl",
    "register_sae_class",
    "register_sae_training_class",
    "upload_saes_to_huggingface",
]


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    if name in _LAZY_EXPORTS:
        return _lazy_attribute(name)
    if find_spec(f"{__name__}.{name}") is not None:
        # A submodule not imported yet (``from saecore import resolver``): the import system imports it.
        raise AttributeError(name)
    return plugin_export(__name__, name)


def __dir__() -> list[str]:
    """The module's names, its lazy names and every class an installed plugin provides."""
    return sorted({*_module_dir(), *get_registry().exported_classes()})
