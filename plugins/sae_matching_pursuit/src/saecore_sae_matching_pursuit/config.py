"""Config models of the matching pursuit SAE (SAELens v6 field names and defaults)."""

from __future__ import annotations

import warnings
from typing import ClassVar

from pydantic import Field, field_validator

from saecore import SAEConfig, TrainingPresets, TrainingSAEConfig
from saecore.config.validation import PositiveCount


class MatchingPursuitSAEConfig(SAEConfig):
    """Inference matching pursuit SAE.

    A row stops selecting latents once its residual norm is below ``residual_threshold``
    (0 turns this test off), once a step adds no new latent to its support (with
    ``stop_on_duplicate_support``), or after ``max_iterations`` steps (``None``: ``d_in``).
    """

    ARCHITECTURE: ClassVar[str] = "matching_pursuit"

    residual_threshold: float = Field(default=1e-2, ge=0)
    max_iterations: PositiveCount | None = None
    stop_on_duplicate_support: bool = True


class MatchingPursuitTrainingSAEConfig(TrainingSAEConfig):
    """Training recipe ``matching_pursuit``: the reconstruction MSE alone (the pursuit sets the sparsity).

    The pursuit's greedy choice compares ``residual · W_dec,i`` across latents, which only
    ranks fairly when every decoder row has the same norm, so training starts from unit
    rows: ``decoder_init_norm`` is always 1.0.
    """

    ARCHITECTURE: ClassVar[str] = "matching_pursuit"

    residual_threshold: float = Field(default=1e-2, ge=0)
    max_iterations: PositiveCount | None = None
    stop_on_duplicate_support: bool = True
    decoder_init_norm: float | None = 1.0

    @field_validator("decoder_init_norm")
    @classmethod
    def _unit_decoder_rows(cls, value: float | None) -> float:
        if value != 1.0:
            warnings.warn(
                f"decoder_init_norm={value!r} is not used by the matching_pursuit recipe, whose decoder rows "
                "start at norm 1.0; using 1.0",
                UserWarning,
                stacklevel=2,
            )
        return 1.0

    @classmethod
    def synthetic_data_presets(cls, d_sae: int) -> TrainingPresets:
        """A few pursuit steps per input: the synthetic source's inputs mix a few features each."""
        return TrainingPresets(sae={"max_iterations": 8}, trainer={"lr": 1e-2, "training_tokens": 1_000_000})
