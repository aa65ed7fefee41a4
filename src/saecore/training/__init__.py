"""Training: the architecture-agnostic trainer, its configs and the runner.

``TrainingRunner(TrainingRunnerConfig(sae=..., source=...)).run()`` is the whole
pipeline; ``SAETrainer`` is the loop alone, for callers that build their own SAE and
source. ``SAESweepRunner(SAESweepConfig(...)).run()`` trains several SAEs on one source.
"""

from saecore.training.errors import RankFailedError, TrainingDivergedError, TrainingInterruptedError
from saecore.training.logging_config import LoggingConfig
from saecore.training.runner import TrainingRunner
from saecore.training.runner_config import TrainingRunnerConfig
from saecore.training.summary import TrainingSummary
from saecore.training.sweep_config import SAESweepConfig, SweepMember
from saecore.training.sweep_runner import SAESweepRunner
from saecore.training.trainer import SAETrainer
from saecore.training.trainer_config import TrainerConfig

__all__ = [
    "LoggingConfig",
    "RankFailedError",
    "SAESweepConfig",
    "SAESweepRunner",
    "SAETrainer",
    "SweepMember",
    "TrainerConfig",
    "TrainingDivergedError",
    "TrainingInterruptedError",
    "TrainingRunner",
    "TrainingRunnerConfig",
    "TrainingSummary",
]
