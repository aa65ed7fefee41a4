"""saecore: train, load and evaluate sparse autoencoders, with every architecture a plugin.

Core names are imported on first access (PEP 562), so that ``import saecore`` does not
load torch until a name needs it. The core's generic runner is
``saecore.training.SAETrainingRunner``; the top-level name ``SAETrainingRunner`` is
left to the LLM plugin, where it is SAELens's deprecated alias of the LM runner.

Classes that plugins provide (``TopKSAE``, ``StandardTrainingSAEConfig``, ...) are
resolved lazily through the registry on first access; when the plugin is missing, the
ImportError names the package to install.
"""

from __future__ import annotations

from importlib import import_module
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
from saecore.registry import get_registry
from saecore.version import __version__

if TYPE_CHECKING:
    from saecore.config.metadata import SAEMetadata
    from saecore.config.sae_config import SAEConfig, TrainingSAEConfig
    from saecore.hook_points import HookPoint
    from saecore.sae import SAE
    from saecore.sources.base import ActivationSource, SourceConfig
    from saecore.training import (
        LoggingConfig,
        SAESweepConfig,
        SAESweepRunner,
        SAETrainer,
        SAETrainingRunnerConfig,
        SweepMember,
        TrainerConfig,
    )
    from saecore.training_sae import TrainCoefficientConfig, TrainingSAE, TrainStepInput, TrainStepOutput

# Names whose modules import torch, imported on first access: ``saecore --version`` and the
# plugins' entry points (which import saecore for ``hookimpl``) stay free of torch.
_TORCH_EXPORTS = {
    "SAEMetadata": "saecore.config.metadata",
    "SAEConfig": "saecore.config.sae_config",
    "TrainingSAEConfig": "saecore.config.sae_config",
    "HookPoint": "saecore.hook_points",
    "SAE": "saecore.sae",
    "ActivationSource": "saecore.sources.base",
    "SourceConfig": "saecore.sources.base",
    **dict.fromkeys(("LoggingConfig", "SAESweepConfig", "SAESweepRunner", "SAETrainer", "SAETrainingRunnerConfig",
                     "SweepMember", "TrainerConfig"), "saecore.training"),
    **dict.fromkeys(("TrainCoefficientConfig", "TrainingSAE", "TrainStepInput", "TrainStepOutput"),
                    "saecore.training_sae"),
}

__all__ = [
    "SAE",
    "ActivationSource",
    "ConfigError",
    "DuplicateNameError",
    "HookPoint",
    "LoggingConfig",
    "PluginLoadError",
    "SAEConfig",
    "SAEFileError",
    "SAEMetadata",
    "SAESweepConfig",
    "SAESweepRunner",
    "SAETrainer",
    "SAETrainingRunnerConfig",
    "SaecoreError",
    "SourceConfig",
    "SweepMember",
    "TrainCoefficientConfig",
    "TrainStepInput",
    "TrainStepOutput",
    "TrainerConfig",
    "TrainingSAE",
    "TrainingSAEConfig",
    "UnknownNameError",
    "__version__",
    "get_registry",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    if name in _TORCH_EXPORTS:
        value = getattr(import_module(_TORCH_EXPORTS[name]), name)
        globals()[name] = value
        return value
    from saecore.known_plugins import CLASS_PACKAGES, install_hint

    exported = get_registry().exported_classes()
    if name in exported:
        return exported[name]
    if name in CLASS_PACKAGES:
        package = CLASS_PACKAGES[name]
        raise ImportError(
            f"cannot import name {name!r} from 'saecore': it is provided by the plugin package "
            f"{package}, which is not installed: {install_hint(package)}",
            name=name,
        )
    raise AttributeError(f"module 'saecore' has no attribute {name!r}")
