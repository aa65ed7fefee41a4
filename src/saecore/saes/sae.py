"""SAELens's ``sae_lens.saes.sae`` path: the core's SAE and training-SAE contracts."""

from saecore.config.metadata import SAEMetadata
from saecore.config.sae_config import SAEConfig, TrainingSAEConfig
from saecore.sae import SAE
from saecore.training_sae import TrainCoefficientConfig, TrainingSAE, TrainStepInput, TrainStepOutput

__all__ = [
    "SAE",
    "SAEConfig",
    "SAEMetadata",
    "TrainCoefficientConfig",
    "TrainStepInput",
    "TrainStepOutput",
    "TrainingSAE",
    "TrainingSAEConfig",
]
