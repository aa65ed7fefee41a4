"""Gated SAE (Rajamanoharan et al., 2024): which latents fire and how strongly are separate questions.

With ``x_c`` the processed, centred input:

- gate:      ``π = x_c W_enc + b_gate``; a latent fires where ``π > 0``;
- magnitude: ``m = x_c (W_enc ⊙ e^{r_mag}) + b_mag``;
- ``f = 1[π > 0] ⊙ ReLU(m)``, ``x̂ = f W_dec + b_dec``.

The two paths share ``W_enc``, so ``x_c W_enc`` is computed once and the magnitude path
reuses it as ``(x_c W_enc) ⊙ e^{r_mag}``: one encoder matmul per forward instead of two.

The gate is a hard step and gets no gradient through ``f``; training gives it one through
``ReLU(π)``: an L1 penalty on ``ReLU(π)`` weighted by decoder row norms, and an auxiliary
reconstruction ``ReLU(π) W_dec + b_dec`` of the input (the decoder is not detached).

Both decodes, and every gradient past the encoder product, touch only the gate's support
``π > 0``: ``f`` and ``ReLU(π)`` vanish off it, and so do their gradients. When a batch's
support is sparse enough the step runs over it (``saecore.sparse``): the encoder
product stays the one dense product, the rest costs ``nnz · d_in`` each.
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
    Support,
    decode_support,
    per_row_sum,
    sparse_route_support,
    support_encoder_products,
)
from saecore.training_sae import TrainStepOutput, training_step_output
from saecore_sae_gated.gated_encoder import GatedEncoding

PER_TOKEN_NORMALIZATIONS = ("constant_norm_rescale", "layer_norm")


class GatedSAEConfig(SAEConfig):
    ARCHITECTURE: ClassVar[str] = "gated"


class GatedTrainingSAEConfig(TrainingSAEConfig):
    ARCHITECTURE: ClassVar[str] = "gated"

    l1_coefficient: float = Field(default=1.0, ge=0)
    l1_warm_up_steps: int = Field(default=0, ge=0)

    @classmethod
    def synthetic_data_presets(cls, d_sae: int) -> TrainingPresets:
        """Values that recover the synthetic source's features in 1M tokens (benchmarks/quality_synthetic.py)."""
        return TrainingPresets(sae={"l1_coefficient": 1.0}, trainer={"lr": 5e-3, "training_tokens": 1_000_000})


def _init_gated_parameters(sae: SAE[Any]) -> None:
    """Zero gate and magnitude biases and ``r_mag = 0``, so both paths start as ``x_c W_enc``."""
    sae.b_gate = nn.Parameter(sae._zeros(sae.cfg.d_sae))
    sae.r_mag = nn.Parameter(sae._zeros(sae.cfg.d_sae))
    sae.b_mag = nn.Parameter(sae._zeros(sae.cfg.d_sae))


def _gate_and_magnitude(
    sae: SAE[Any], sae_in_centred: torch.Tensor, b_dec_term: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(π, hooked magnitude pre-activation)`` from a single ``x_c W_enc``.

    ``b_dec_term`` (zero, see ``centred_input``) joins each bias scaled as ``x_c W_enc`` is
    on that path, so ``b_dec`` gets both paths' gradient through one matrix-vector product.
    """
    shared = sae_in_centred @ sae.W_enc
    gain = sae.r_mag.exp()
    gate_pre = shared + (sae.b_gate + b_dec_term)
    magnitude_pre = sae.hook_sae_acts_pre(shared * gain + (sae.b_mag + b_dec_term * gain))
    return gate_pre, magnitude_pre


def _gated_acts(sae: SAE[Any], gate_pre: torch.Tensor, magnitude_pre: torch.Tensor) -> torch.Tensor:
    active = (gate_pre > 0).to(magnitude_pre.dtype)
    return sae.hook_sae_acts_post(active * torch.relu(magnitude_pre))


@torch.no_grad()
def _fold_gated_W_dec_norm(sae: SAE[Any]) -> None:
    """Scaling ``W_enc`` columns by ``‖W_dec,i‖`` scales ``x_c W_enc``; both biases must follow.

    ``r_mag`` multiplies, so it is already consistent with the rescaled ``W_enc``.
    """
    norms = sae.fold_and_get_W_dec_norm()
    sae.b_gate.data.mul_(norms)
    sae.b_mag.data.mul_(norms)


class GatedSAE(SAE[GatedSAEConfig]):
    b_gate: nn.Parameter
    b_mag: nn.Parameter
    r_mag: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        _init_gated_parameters(self)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        gate_pre, magnitude_pre = _gate_and_magnitude(self, *centred_input(self, x))
        return _gated_acts(self, gate_pre, magnitude_pre)

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        return self.finish_decode(feature_acts @ self.W_dec + self.b_dec)

    def fold_W_dec_norm(self) -> None:
        _fold_gated_W_dec_norm(self)


class GatedTrainingSAE(TrainingSAE[GatedTrainingSAEConfig]):
    """Training recipe ``gated``: MSE + ``l1_loss`` + ``auxiliary_reconstruction_loss``.

    ``training_forward_pass`` is overridden to hand the forward's ``ReLU(π)`` to the gate
    losses, so a step costs one encoder matmul and two decodes (main and auxiliary), and to
    run the encoder's elementwise part as one autograd node (``GatedEncoding``) that keeps
    only the two latent-sized tensors the decoders keep anyway. That node never builds the
    magnitude pre-activation, so ``TrainStepOutput.hidden_pre`` is ``None`` on it; a hook on
    ``hook_sae_acts_pre`` (which may read or replace that pre-activation) makes the step take
    the separate ops, and ``hidden_pre`` is then the hooked pre-activation. At low gate
    density (``saecore.sparse``) only the encoder product stays dense.
    """

    b_gate: nn.Parameter
    b_mag: nn.Parameter
    r_mag: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        _init_gated_parameters(self)

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        return {"l1": TrainCoefficientConfig(self.cfg.l1_coefficient, self.cfg.l1_warm_up_steps)}

    @torch.no_grad()
    def log_histograms(self) -> dict[str, np.ndarray]:
        return {**super().log_histograms(), "weights/b_gate": self.b_gate.detach().float().cpu().numpy(),
                "weights/b_mag": self.b_mag.detach().float().cpu().numpy()}

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate_pre, magnitude_pre = _gate_and_magnitude(self, *centred_input(self, x))
        return _gated_acts(self, gate_pre, magnitude_pre), magnitude_pre

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        """The dense step, or at low density the same loss through the gate's support only."""
        sae_in_centred, b_dec_term = centred_input(self, step_input.sae_in)
        magnitude_pre: torch.Tensor | None = None
        if self.hook_sae_acts_pre.is_hooked:
            gate_pre, magnitude_pre = _gate_and_magnitude(self, sae_in_centred, b_dec_term)
            feature_acts = _gated_acts(self, gate_pre, magnitude_pre)
            gate_acts = torch.relu(gate_pre)
        else:
            gain = self.r_mag.exp()
            shared = sae_in_centred @ self.W_enc
            feature_acts, gate_acts = GatedEncoding.apply(
                shared, gain, self.b_gate + b_dec_term, self.b_mag + b_dec_term * gain
            )
            feature_acts = self.hook_sae_acts_post(feature_acts)
            support = sparse_route_support(self, step_input, gate_acts)
            if support is not None:
                return self._support_step(step_input, sae_in_centred, shared, feature_acts, support)
        sae_out = self.decode(feature_acts)
        gate_losses = self._gate_losses(step_input, gate_acts, sae_in_centred)
        return training_step_output(step_input, sae_out, feature_acts, magnitude_pre, gate_losses)

    def _support_step(
        self,
        step_input: TrainStepInput,
        sae_in_centred: torch.Tensor,
        shared: torch.Tensor,
        feature_acts: torch.Tensor,
        support: Support,
    ) -> TrainStepOutput:
        """The step's losses from the gate's support, where ``ReLU(π) = π`` and the gate is open.

        The values at the support are the dense step's, computed by the same operations;
        the dense activations are returned detached (the trainer only reads them).
        """
        latents = support.latents
        products = support_encoder_products(self, sae_in_centred, shared, support)
        gate_values = products + self.b_gate[latents]
        magnitudes = torch.relu(products * self.r_mag.exp()[latents] + self.b_mag[latents])
        lead = step_input.sae_in.shape[:-1]
        decoded = decode_support(magnitudes, support, self.W_dec).reshape(*lead, self.cfg.d_in)
        sae_out = self.finish_decode(decoded + self.b_dec)
        via_gate = decode_support(gate_values, support, self.W_dec).reshape(*lead, self.cfg.d_in) + self.b_dec
        l1_per_row = per_row_sum(gate_values * self.W_dec.norm(dim=1)[latents], support)
        gate_losses = self._named_gate_losses(step_input, l1_per_row, via_gate, sae_in_centred)
        firing = support.firing_counts(magnitudes.detach() != 0)
        return training_step_output(step_input, sae_out, feature_acts.detach(), None, gate_losses, firing)

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The gate losses for callers outside ``training_forward_pass``.

        ``hidden_pre`` is the magnitude pre-activation, from which ``π`` cannot be read
        back, so ``π`` is recomputed here, with the hooks silent (the step already ran
        them) and the normalisation statistics of the step left untouched.
        """
        saved_norm_state = self._norm_state
        with self._hooks_bypassed():
            sae_in_centred, b_dec_term = centred_input(self, step_input.sae_in)
        self._norm_state = saved_norm_state
        gate_acts = torch.relu(sae_in_centred @ self.W_enc + (self.b_gate + b_dec_term))
        return self._gate_losses(step_input, gate_acts, sae_in_centred)

    def _gate_losses(
        self, step_input: TrainStepInput, gate_acts: torch.Tensor, sae_in_centred: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The L1 and auxiliary reconstruction losses on ``ReLU(π)``."""
        l1_per_row = (gate_acts * self.W_dec.norm(dim=1)).sum(dim=-1)
        via_gate = gate_acts @ self.W_dec + self.b_dec
        return self._named_gate_losses(step_input, l1_per_row, via_gate, sae_in_centred)

    def _named_gate_losses(
        self,
        step_input: TrainStepInput,
        l1_per_row: torch.Tensor,
        via_gate: torch.Tensor,
        sae_in_centred: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The gate losses from each row's weighted L1 and the auxiliary reconstruction ``ReLU(π) W_dec + b_dec``."""
        target = self._encoder_space_input(step_input.sae_in, sae_in_centred)
        return {
            "l1_loss": step_input.coefficients["l1"] * l1_per_row.mean(),
            "auxiliary_reconstruction_loss": (via_gate - target).pow(2).sum(dim=-1).mean(),
        }

    def _encoder_space_input(self, sae_in: torch.Tensor, sae_in_centred: torch.Tensor) -> torch.Tensor:
        """What the auxiliary reconstruction aims at: the input as normalised for the encoder.

        Without per-token normalisation this is the batch itself (as in SAELens). With
        ``constant_norm_rescale`` or ``layer_norm``, ``ReLU(π) W_dec + b_dec`` lives in the
        normalised space, so it is compared with the normalised input, rebuilt from the
        centred one and detached (``b_dec`` cancels there).
        """
        if self.cfg.normalize_activations in PER_TOKEN_NORMALIZATIONS:
            return (sae_in_centred + self.b_dec * self.cfg.apply_b_dec_to_input).detach()
        return sae_in.to(sae_in_centred.dtype)

    def fold_W_dec_norm(self) -> None:
        _fold_gated_W_dec_norm(self)
