"""Config models of the transcoders (SAELens 6.54 field names; ``d_out`` defaults to ``d_in``).

A transcoder reads ``d_in`` wide activations at ``metadata.hook_name`` and predicts ``d_out``
wide activations at ``metadata.hook_name_out``. Its decoder bias lives in the output space,
so it cannot be subtracted from the input: ``apply_b_dec_to_input`` must be False. Only the
input-independent normalisations apply (``none``, ``expected_average_only_in``); per-token
ones would have to be undone in a space the input was never in.

Each training config inherits its inference config's fields and validators, and the
training fields of ``TrainingSAEConfig``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from saecore import SAEConfig, TrainingPresets, TrainingSAEConfig
from saecore.config.validation import PositiveCount, check_tensor_size

TRANSCODER_NORMALIZATIONS = ("none", "expected_average_only_in")


class TranscoderConfig(SAEConfig):
    """ReLU transcoder (``architecture: "transcoder"``)."""

    ARCHITECTURE: ClassVar[str] = "transcoder"
    PREDICTS_TARGET: ClassVar[bool] = True

    d_out: PositiveCount = None  # type: ignore[assignment]
    apply_b_dec_to_input: bool = False

    @model_validator(mode="before")
    @classmethod
    def _d_out_defaults_to_d_in(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("d_out") is None and "d_in" in data:
            return {**data, "d_out": data["d_in"]}
        return data

    @property
    def d_target(self) -> int:
        return self.d_out

    @model_validator(mode="after")
    def _transcoder_fields(self) -> TranscoderConfig:
        if self.apply_b_dec_to_input:
            raise ValueError(
                "apply_b_dec_to_input=True is not allowed for a transcoder: b_dec has d_out entries and "
                "belongs to the output space; allowed: False"
            )
        if self.normalize_activations not in TRANSCODER_NORMALIZATIONS:
            raise ValueError(
                f"normalize_activations={self.normalize_activations!r} is not supported for a transcoder; "
                f"allowed: {', '.join(TRANSCODER_NORMALIZATIONS)}"
            )
        check_tensor_size(self.d_out, self.d_sae)
        return self


class SkipTranscoderConfig(TranscoderConfig):
    """ReLU transcoder with a linear skip connection ``W_skip [d_out, d_in]``."""

    ARCHITECTURE: ClassVar[str] = "skip_transcoder"


class JumpReLUTranscoderConfig(TranscoderConfig):
    """JumpReLU transcoder: a latent fires only above its learnt ``threshold``."""

    ARCHITECTURE: ClassVar[str] = "jumprelu_transcoder"


class JumpReLUSkipTranscoderConfig(JumpReLUTranscoderConfig):
    """JumpReLU transcoder with a skip connection."""

    ARCHITECTURE: ClassVar[str] = "jumprelu_skip_transcoder"


def _check_k_fits(k: int, d_sae: int) -> None:
    if k > d_sae:
        raise ValueError(f"k = {k} is larger than d_sae = {d_sae}; allowed: 1 <= k <= d_sae ({d_sae})")


class TopKTranscoderConfig(TranscoderConfig):
    """TopK transcoder: the ``k`` largest pre-activations of each input fire.

    ``rescale_acts_by_decoder_norm`` ranks latents by ``h_i·‖W_dec,i‖`` and divides the kept
    values by the norm again before decoding; only transcoders trained that way want it.
    """

    ARCHITECTURE: ClassVar[str] = "topk_transcoder"

    k: PositiveCount = 100
    rescale_acts_by_decoder_norm: bool = False

    @model_validator(mode="after")
    def _k_at_most_d_sae(self) -> TopKTranscoderConfig:
        _check_k_fits(self.k, self.d_sae)
        return self


class TopKSkipTranscoderConfig(TopKTranscoderConfig):
    """TopK transcoder with a skip connection (sparsify's ``skip_connection``)."""

    ARCHITECTURE: ClassVar[str] = "topk_skip_transcoder"


# -- training recipes -------------------------------------------------------------------------


class TrainingTranscoderConfig(TranscoderConfig, TrainingSAEConfig):
    """Training recipe ``transcoder``: MSE to the target plus an L1 penalty weighted by decoder norms."""

    ARCHITECTURE: ClassVar[str] = "transcoder"

    l1_coefficient: float = Field(default=1.0, ge=0)
    l1_warm_up_steps: int = Field(default=0, ge=0)

    @classmethod
    def synthetic_data_presets(cls, d_sae: int) -> TrainingPresets:
        """Values that recover the synthetic transcoder source's features (tests/test_transcoder_recovery.py)."""
        return TrainingPresets(sae={"l1_coefficient": 0.3}, trainer={"lr": 1e-2, "training_tokens": 1_000_000})


class SkipTrainingTranscoderConfig(TrainingTranscoderConfig, SkipTranscoderConfig):
    ARCHITECTURE: ClassVar[str] = "skip_transcoder"


class JumpReLUTrainingTranscoderConfig(JumpReLUTranscoderConfig, TrainingSAEConfig):
    """Training recipe ``jumprelu_transcoder``: MSE to the target plus ``l0_coefficient·L0`` (step estimator)."""

    ARCHITECTURE: ClassVar[str] = "jumprelu_transcoder"

    jumprelu_init_threshold: float = Field(default=0.01, gt=0)
    jumprelu_bandwidth: float = Field(default=0.05, gt=0)
    l0_coefficient: float = Field(default=1.0, ge=0)
    l0_warm_up_steps: int = Field(default=0, ge=0)

    @classmethod
    def synthetic_data_presets(cls, d_sae: int) -> TrainingPresets:
        """Values that recover the synthetic transcoder source's features (tests/test_transcoder_recovery.py)."""
        return TrainingPresets(
            sae={"l0_coefficient": 0.2, "jumprelu_init_threshold": 0.1},
            trainer={"lr": 1e-2, "training_tokens": 1_000_000},
        )


class JumpReLUSkipTrainingTranscoderConfig(JumpReLUTrainingTranscoderConfig, JumpReLUSkipTranscoderConfig):
    ARCHITECTURE: ClassVar[str] = "jumprelu_skip_transcoder"


class TopKTrainingTranscoderConfig(TopKTranscoderConfig, TrainingSAEConfig):
    """Training recipe ``topk_transcoder``: MSE to the target plus AuxK, with a sparse step."""

    ARCHITECTURE: ClassVar[str] = "topk_transcoder"

    aux_loss_coefficient: float = Field(default=1.0, ge=0)
    rescale_acts_by_decoder_norm: bool = True

    @classmethod
    def synthetic_data_presets(cls, d_sae: int) -> TrainingPresets:
        """Values that recover the synthetic transcoder source's features (tests/test_transcoder_recovery.py)."""
        return TrainingPresets(sae={"k": 8}, trainer={"lr": 1e-2, "training_tokens": 1_000_000})

    def to_inference_dict(self) -> dict[str, Any]:
        """Saved transcoders have the decoder norms folded in, so they must not rescale again."""
        result = super().to_inference_dict()
        result["rescale_acts_by_decoder_norm"] = False
        return result


class TopKSkipTrainingTranscoderConfig(TopKTrainingTranscoderConfig, TopKSkipTranscoderConfig):
    ARCHITECTURE: ClassVar[str] = "topk_skip_transcoder"
