"""SAELens's ``sae_lens.training.sae_trainer`` path: ``SAETrainer``, the training loop."""

from saecore.training.trainer import SAETrainer

__all__ = ["SAETrainer"]
