"""Training recipes of the ReLU and JumpReLU transcoders, with and without a skip connection.

Every recipe compares its prediction with the step's target (``TrainStepInput.target``, the
activation at the output hook), never with its input. Decoder rows start at
``decoder_init_norm``; the encoder starts Kaiming-uniform, since input and output spaces
differ and ``W_enc = W_decᵀ`` has no meaning here.

* ``transcoder``: ``l1_loss = l1_coefficient · mean_b Σ_i f_i ‖W_dec,i‖``.
* ``jumprelu_transcoder``: ``f = JumpReLU(h, θ)`` with ``θ = exp(log_threshold)`` and
  ``l0_loss = l0_coefficient · mean_b Σ_i 1[h_i > θ_i]``, both through the JumpReLU plugin's
  straight-through estimators (bandwidth ``jumprelu_bandwidth``). Saved with ``threshold = θ``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from saecore_sae_jumprelu.ste import JumpReLU, Step
from torch import nn

from saecore import TrainCoefficientConfig, TrainingSAE, TrainStepInput, TrainStepOutput
from saecore.training_sae import training_step_output
from saecore_transcoders.config import JumpReLUTrainingTranscoderConfig, TrainingTranscoderConfig
from saecore_transcoders.transcoder import SkipTranscoder, Transcoder


class TrainingTranscoder(Transcoder, TrainingSAE[Any]):
    """Training recipe ``transcoder`` (ReLU + L1); saves as the ``transcoder`` architecture."""

    cfg: TrainingTranscoderConfig

    def initialize_weights(self) -> None:
        super().initialize_weights()
        norm = self.cfg.decoder_init_norm
        if norm is not None and self.W_dec.device.type != "meta":
            with torch.no_grad():
                self.W_dec.data *= norm / self.W_dec.norm(dim=-1, keepdim=True)

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        return {"l1": TrainCoefficientConfig(self.cfg.l1_coefficient, self.cfg.l1_warm_up_steps)}

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_pre = self.hidden_pre(x)
        return self.hook_sae_acts_post(self.activation(hidden_pre)), hidden_pre

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_with_hidden_pre(x)[0]

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        return self.finish_decode(feature_acts @ self.W_dec + self.b_dec)

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        weighted = feature_acts * self.W_dec.norm(dim=1)
        return {"l1_loss": step_input.coefficients["l1"] * weighted.sum(dim=-1).mean()}

    def finish_training_forward_pass(
        self, step_input: TrainStepInput, feature_acts: torch.Tensor, hidden_pre: torch.Tensor
    ) -> TrainStepOutput:
        """Decode, add the skip connection's term, then the MSE to the target and the recipe's losses."""
        sae_out = self.add_skip(step_input.sae_in, self.decode(feature_acts))
        aux_losses = self.calculate_aux_loss(step_input, feature_acts, hidden_pre, sae_out)
        return training_step_output(step_input, sae_out, feature_acts, hidden_pre, aux_losses)


class SkipTrainingTranscoder(TrainingTranscoder, SkipTranscoder):
    """Training recipe ``skip_transcoder``; saves as the ``skip_transcoder`` architecture."""


class JumpReLUTrainingTranscoder(TrainingTranscoder):
    """Training recipe ``jumprelu_transcoder``; saves as the ``jumprelu_transcoder`` architecture."""

    cfg: JumpReLUTrainingTranscoderConfig  # type: ignore[assignment]
    log_threshold: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        initial = math.log(self.cfg.jumprelu_init_threshold)
        self.log_threshold = nn.Parameter(torch.full((self.cfg.d_sae,), initial, dtype=self.dtype, device=self.device))

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        return {"l0": TrainCoefficientConfig(self.cfg.l0_coefficient, self.cfg.l0_warm_up_steps)}

    def activation(self, hidden_pre: torch.Tensor) -> torch.Tensor:
        return JumpReLU.apply(hidden_pre, self.log_threshold.exp(), self.cfg.jumprelu_bandwidth, False)

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        fired = Step.apply(hidden_pre, self.log_threshold.exp(), self.cfg.jumprelu_bandwidth, False)
        return {"l0_loss": step_input.coefficients["l0"] * fired.sum(dim=-1).mean()}

    def process_state_dict_for_saving_inference(self, state_dict: dict[str, torch.Tensor]) -> None:
        super().process_state_dict_for_saving_inference(state_dict)
        state_dict["threshold"] = state_dict.pop("log_threshold").exp()


class JumpReLUSkipTrainingTranscoder(JumpReLUTrainingTranscoder, SkipTranscoder):
    """Training recipe ``jumprelu_skip_transcoder``; saves as the ``jumprelu_skip_transcoder`` architecture."""
