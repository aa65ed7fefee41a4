"""Config of the BatchTopK training recipe (SAELens v6 field names and defaults)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from saecore import SAEConfig, TrainingPresets, TrainingSAEConfig, get_registry

SAVED_AS = "jumprelu"

# AuxK compares a reconstruction in normalised space with a residual in the input's space;
# per-token normalisations make the two disagree (SAELens's TopK raises mid-training).
UNSUPPORTED_NORMALIZATIONS = ("constant_norm_rescale", "layer_norm")


class BatchTopKTrainingSAEConfig(TrainingSAEConfig):
    """Training recipe ``batchtopk``.

    ``k`` is the *average* number of active latents per input: a batch of ``B`` inputs keeps
    its ``int(k·B)`` largest activations wherever they fall, so it may be fractional.
    The trained SAE is saved as a ``jumprelu`` SAE whose per-latent threshold is the
    learned global threshold.
    """

    ARCHITECTURE: ClassVar[str] = "batchtopk"

    k: float = Field(default=100, gt=0, description="Average active latents per input; a batch keeps int(k·B).")
    topk_threshold_lr: float = Field(
        default=0.01, ge=0, le=1, description="Rate of the saved threshold's moving average of the smallest kept value."
    )
    aux_loss_coefficient: float = Field(default=1.0, ge=0, description="Weight of the AuxK dead-latent loss.")
    rescale_acts_by_decoder_norm: bool = Field(
        default=True, description="Rank latents by h·‖W_dec,i‖ so decoder norms cannot sway the selection."
    )

    @classmethod
    def synthetic_data_presets(cls, d_sae: int) -> TrainingPresets:
        """Values that recover the synthetic source's features in 1M tokens (benchmarks/quality_synthetic.py)."""
        return TrainingPresets(
            sae={"k": 8, "rescale_acts_by_decoder_norm": False, "topk_threshold_lr": 0.05},
            trainer={"lr": 1e-2, "training_tokens": 1_000_000, "train_batch_size_tokens": 2048},
        )

    @field_validator("normalize_activations")
    @classmethod
    def _auxk_compatible_normalization(cls, value: str) -> str:
        if value in UNSUPPORTED_NORMALIZATIONS:
            raise ValueError(
                f"not supported by the {cls.ARCHITECTURE} recipe: its AuxK loss would compare a reconstruction "
                "in normalised space with a residual in the input's space; allowed: none, expected_average_only_in"
            )
        return value

    @model_validator(mode="after")
    def _k_at_most_d_sae(self) -> BatchTopKTrainingSAEConfig:
        if self.k > self.d_sae:
            raise ValueError(
                f"field 'k' = {self.k!r} is larger than d_sae = {self.d_sae}: a batch cannot keep more "
                f"activations per input than there are latents; allowed: 0 < k <= {self.d_sae}"
            )
        return self

    @classmethod
    def inference_config_class(cls) -> type[SAEConfig]:
        """A BatchTopK SAE is saved as a JumpReLU SAE (found through the registry, like any architecture)."""
        config_class: type[SAEConfig] = get_registry().architecture(SAVED_AS).config_class
        return config_class
