"""Standard SAE: ``f = ReLU((x - b_dec) W_enc + b_enc)``, ``x̂ = f W_dec + b_dec``.

Training adds ``l1_coefficient · mean_b ‖f ⊙ ‖W_dec,i‖‖_p`` (the norm itself, not its
p-th power), so the penalty cannot be dodged by shrinking decoder rows. Once a batch's
activations are sparse, the step runs over their nonzeros (``saecore.sparse``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from saecore import (
    SAE,
    SAEConfig,
    TrainCoefficientConfig,
    TrainingPresets,
    TrainingSAE,
    TrainingSAEConfig,
    TrainStepInput,
)
from saecore.centred_input import centred_input
from saecore.sparse import (
    decode_product,
    per_row_sum,
    sparse_route_support,
    support_preactivations,
    support_training_output,
)
from saecore.training_sae import TrainStepOutput


class StandardSAEConfig(SAEConfig):
    ARCHITECTURE: ClassVar[str] = "standard"


class StandardTrainingSAEConfig(TrainingSAEConfig):
    ARCHITECTURE: ClassVar[str] = "standard"

    l1_coefficient: float = Field(default=1.0, ge=0)
    lp_norm: float = Field(default=1.0, gt=0)
    l1_warm_up_steps: int = Field(default=0, ge=0)

    @classmethod
    def synthetic_data_presets(cls, d_sae: int) -> TrainingPresets:
        """Values that recover the synthetic source's features in 1M tokens (benchmarks/quality_synthetic.py)."""
        return TrainingPresets(sae={"l1_coefficient": 0.5}, trainer={"lr": 1e-2, "training_tokens": 1_000_000})


def _init_b_enc(sae: SAE[Any]) -> None:
    sae.b_enc = nn.Parameter(sae._zeros(sae.cfg.d_sae))


class StandardSAE(SAE[StandardSAEConfig]):
    b_enc: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        _init_b_enc(self)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        hidden_pre = self.hook_sae_acts_pre(self.process_sae_in(x) @ self.W_enc + self.b_enc)
        return self.hook_sae_acts_post(torch.relu(hidden_pre))

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        return self.finish_decode(decode_product(feature_acts, self.W_dec) + self.b_dec)


class StandardTrainingSAE(TrainingSAE[StandardTrainingSAEConfig]):
    b_enc: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        _init_b_enc(self)

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        return {"l1": TrainCoefficientConfig(self.cfg.l1_coefficient, self.cfg.l1_warm_up_steps)}

    @torch.no_grad()
    def log_histograms(self) -> dict[str, np.ndarray]:
        return {**super().log_histograms(), "weights/b_e": self.b_enc.detach().float().cpu().numpy()}

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._encode_for_training(x)[1:]

    def _encode_for_training(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_c, feature_acts, hidden_pre)``: the encoder input is what the sparse ``∂W_enc`` sums."""
        sae_in, b_dec_term = centred_input(self, x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + (self.b_enc + b_dec_term))
        return sae_in, self.hook_sae_acts_post(torch.relu(hidden_pre)), hidden_pre

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        """The dense step, or at low density the same loss through the active entries only."""
        sae_in, feature_acts, hidden_pre = self._encode_for_training(step_input.sae_in)
        support = sparse_route_support(self, step_input, feature_acts)
        if support is None:
            return self.finish_training_forward_pass(step_input, feature_acts, hidden_pre)
        # At an active entry ReLU(h) = h with slope 1, so the activations are h there.
        acts = support_preactivations(self, sae_in, hidden_pre, support)
        weighted = acts * self.W_dec.norm(dim=1)[support.latents]
        p = self.cfg.lp_norm
        # The entries are positive: their p-norm per row needs no absolute value.
        per_row = per_row_sum(weighted, support) if p == 1 else per_row_sum(weighted.pow(p), support).pow(1 / p)
        l1_loss = step_input.coefficients["l1"] * per_row.mean()
        return support_training_output(
            self, step_input, support, acts, feature_acts, hidden_pre, {"l1_loss": l1_loss}, support.firing_counts()
        )

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        weighted = feature_acts * self.W_dec.norm(dim=1)
        l1 = weighted.norm(p=self.cfg.lp_norm, dim=-1).mean()
        return {"l1_loss": step_input.coefficients["l1"] * l1}
