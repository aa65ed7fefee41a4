"""Config models of the TopK SAE (SAELens v6 field names and defaults)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from saecore import SAEConfig, TrainingPresets, TrainingSAEConfig
from saecore.config.validation import PositiveCount


def _check_k_fits(k: int, d_sae: int) -> None:
    """``torch.topk`` cannot pick more latents than exist; say so before the first forward does."""
    if k > d_sae:
        raise ValueError(f"k = {k} is larger than d_sae = {d_sae}; allowed: 1 <= k <= d_sae ({d_sae})")


class TopKSAEConfig(SAEConfig):
    """Inference TopK SAE.

    ``rescale_acts_by_decoder_norm`` ranks latents by ``h_i·‖W_dec,i‖`` (and divides the
    kept values by the norm again before decoding); only SAEs trained that way want it.
    """

    ARCHITECTURE: ClassVar[str] = "topk"

    k: PositiveCount = 100
    rescale_acts_by_decoder_norm: bool = False

    @model_validator(mode="after")
    def _k_at_most_d_sae(self) -> TopKSAEConfig:
        _check_k_fits(self.k, self.d_sae)
        return self


class TopKTrainingSAEConfig(TrainingSAEConfig):
    """Training recipe ``topk``: TopK activations, MSE plus the AuxK dead-latent loss.

    ``use_sparse_activations`` (SAELens's field) makes the training SAE hand out its
    feature activations as sparse COO tensors instead of dense ``[..., d_sae]`` ones,
    which saves building a dense tensor every step.
    """

    ARCHITECTURE: ClassVar[str] = "topk"

    k: PositiveCount = 100
    use_sparse_activations: bool = False
    aux_loss_coefficient: float = Field(default=1.0, ge=0)
    rescale_acts_by_decoder_norm: bool = True

    @classmethod
    def synthetic_data_presets(cls, d_sae: int) -> TrainingPresets:
        """Values that recover the synthetic source's features in 1M tokens (benchmarks/quality_synthetic.py)."""
        return TrainingPresets(sae={"k": 8}, trainer={"lr": 1e-2, "training_tokens": 1_000_000})

    @model_validator(mode="after")
    def _k_at_most_d_sae(self) -> TopKTrainingSAEConfig:
        _check_k_fits(self.k, self.d_sae)
        return self

    def to_inference_dict(self) -> dict[str, Any]:
        """Saved inference SAEs have the decoder norms folded in, so they must not rescale again."""
        result = super().to_inference_dict()
        result["rescale_acts_by_decoder_norm"] = False
        return result
