"""Settings a training recipe suggests for a quick run on the built-in synthetic source.

The config classes keep SAELens's defaults (``k=100``, ``l1_coefficient=1.0``, ...), which
suit language-model activations. On the synthetic source those give a poor quick run, so
``saecore train --source synthetic`` asks the recipe's training config class
(``TrainingSAEConfig.synthetic_data_presets``) what to use instead. Whatever the user sets
wins over a preset; the core adds only the width (``d_sae``) and a learning rate and token
budget for recipes that suggest none.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TrainingPresets(BaseModel):
    """Defaults a recipe suggests: SAE config fields and trainer fields, each by field name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sae: dict[str, Any] = Field(default_factory=dict, description="Fields of the recipe's training config.")
    trainer: dict[str, Any] = Field(
        default_factory=dict, description="Fields of saecore.training.TrainerConfig (lr, training_tokens, ...)."
    )
