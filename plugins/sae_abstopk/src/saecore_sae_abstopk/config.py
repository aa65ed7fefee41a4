"""Config models of the AbsTopK SAE (SAELens v6 field names and defaults)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from saecore import SAEConfig, TrainingPresets, TrainingSAEConfig
from saecore.config.validation import PositiveCount


def _check_k_fits(k: int, d_sae: int) -> None:
    """``torch.topk`` cannot keep more latents than exist; say so before the first forward does."""
    if k > d_sae:
        raise ValueError(f"k = {k} is larger than d_sae = {d_sae}; allowed: 1 <= k <= d_sae ({d_sae})")


class AbsTopKSAEConfig(SAEConfig):
    """Inference AbsTopK SAE.

    ``rescale_acts_by_decoder_norm`` ranks latents by ``|h_i|·‖W_dec,i‖`` (and divides the
    kept values by the norm again before decoding); only SAEs trained that way want it.
    """

    ARCHITECTURE: ClassVar[str] = "abstopk"

    k: PositiveCount = 100
    rescale_acts_by_decoder_norm: bool = False

    @model_validator(mode="after")
    def _k_at_most_d_sae(self) -> AbsTopKSAEConfig:
        _check_k_fits(self.k, self.d_sae)
        return self


class AbsTopKTrainingSAEConfig(TrainingSAEConfig):
    """Training recipe ``abstopk``: AbsTopK activations, MSE plus an AuxK loss over dead latents.

    ``use_sparse_activations`` is SAELens's TopK field, kept so its configs load; AbsTopK
    activations are dense tensors whatever its value (as in SAELens).
    """

    ARCHITECTURE: ClassVar[str] = "abstopk"

    k: PositiveCount = 100
    use_sparse_activations: bool = False
    aux_loss_coefficient: float = Field(default=1.0, ge=0)
    rescale_acts_by_decoder_norm: bool = True

    @classmethod
    def synthetic_data_presets(cls, d_sae: int) -> TrainingPresets:
        """A small k and a fast learning rate: the synthetic source's inputs mix a few features each."""
        return TrainingPresets(sae={"k": 8}, trainer={"lr": 1e-2, "training_tokens": 1_000_000})

    @model_validator(mode="after")
    def _k_at_most_d_sae(self) -> AbsTopKTrainingSAEConfig:
        _check_k_fits(self.k, self.d_sae)
        return self

    def to_inference_dict(self) -> dict[str, Any]:
        """Saved inference SAEs have the decoder norms folded in, so they must not rescale again."""
        result = super().to_inference_dict()
        result["rescale_acts_by_decoder_norm"] = False
        return result
