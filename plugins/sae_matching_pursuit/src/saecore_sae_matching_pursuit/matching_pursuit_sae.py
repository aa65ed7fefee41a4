"""Matching pursuit SAE: a tied SAE (``W_enc = W_decᵀ``, no encoder bias) with a greedy encoder.

``f = MP(x − b_dec)`` (``saecore_sae_matching_pursuit.pursuit``), ``x̂ = f W_dec + b_dec``.
Only ``W_dec`` and ``b_dec`` are parameters. When ``apply_b_dec_to_input`` is off the
decoder adds no bias either, so the SAE stays an exact tied pair.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from torch import nn

from saecore import SAE, TrainingSAE, TrainStepInput
from saecore.errors import UnsafeFoldError
from saecore.training_sae import TrainStepOutput
from saecore_sae_matching_pursuit.config import MatchingPursuitSAEConfig, MatchingPursuitTrainingSAEConfig
from saecore_sae_matching_pursuit.pursuit import matching_pursuit

C = TypeVar("C", MatchingPursuitSAEConfig, MatchingPursuitTrainingSAEConfig)


def _init_tied_weights(sae: SAE[Any], row_norm: float | None) -> None:
    """Kaiming-uniform decoder rows (rescaled to ``row_norm`` if given) and a zero ``b_dec``."""
    sae.b_dec = nn.Parameter(sae._zeros(sae.cfg.d_in))
    w_dec = sae._empty(sae.cfg.d_sae, sae.cfg.d_in)
    if w_dec.device.type != "meta":
        nn.init.kaiming_uniform_(w_dec)
        if row_norm is not None:
            w_dec *= row_norm / w_dec.norm(dim=-1, keepdim=True)
    sae.W_dec = nn.Parameter(w_dec)


class MatchingPursuitBase(SAE[C]):
    """What the inference and training matching pursuit SAEs share: tied weights, the pursuit, decoding."""

    @property  # type: ignore[override]
    def W_enc(self) -> torch.Tensor:
        """The encoder is the decoder's transpose: a view, not a parameter."""
        return self.W_dec.T

    def initialize_weights(self) -> None:
        _init_tied_weights(self, None)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        acts = matching_pursuit(
            self.process_sae_in(x), self.W_dec, cfg.residual_threshold, cfg.max_iterations,
            cfg.stop_on_duplicate_support,
        )
        return self.hook_sae_acts_post(acts)

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        recons = feature_acts @ self.W_dec
        if self.cfg.apply_b_dec_to_input:
            recons = recons + self.b_dec
        return self.finish_decode(recons)

    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        """Refused: the encoder is the decoder, so rescaling rows changes which latents the pursuit picks."""
        raise UnsafeFoldError(
            "fold_W_dec_norm: not allowed for a matching_pursuit SAE, because its encoder is its decoder: "
            "rescaling the decoder rows changes which latents the pursuit picks"
        )

    @torch.no_grad()
    def fold_activation_norm_scaling_factor(self, scaling_factor: float) -> None:
        """Accept raw inputs where training saw ``s·x``.

        The pursuit is homogeneous, ``MP(s·z; τ) = s·MP(z; τ/s)``, so with ``b_dec/s`` and
        ``τ/s`` the decoder stays as it is and the activations shrink by ``1/s``.
        """
        self.b_dec.data.div_(scaling_factor)
        self.cfg.residual_threshold = self.cfg.residual_threshold / scaling_factor
        self.cfg.normalize_activations = "none"


class MatchingPursuitSAE(MatchingPursuitBase[MatchingPursuitSAEConfig]):
    """Inference matching pursuit SAE (architecture ``matching_pursuit``)."""


class MatchingPursuitTrainingSAE(
    MatchingPursuitBase[MatchingPursuitTrainingSAEConfig], TrainingSAE[MatchingPursuitTrainingSAEConfig]
):
    """Training matching pursuit SAE (recipe ``matching_pursuit``): MSE only, the pursuit sets the sparsity."""

    def initialize_weights(self) -> None:
        _init_tied_weights(self, self.cfg.decoder_init_norm)

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f, zeros)``: the pursuit has no single pre-activation, so ``hidden_pre`` is zeros (as in SAELens)."""
        acts = self.encode(x)
        return acts, torch.zeros_like(acts)

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        """The step, plus on logging steps how far the pursuit went: L0 range and residual norms."""
        output = super().training_forward_pass(step_input)
        if step_input.is_logging_step:
            with torch.no_grad():
                l0 = (output.feature_acts != 0).sum(dim=-1).to(output.sae_out.dtype)
                residual_norm = (step_input.sae_in - output.sae_out).norm(dim=-1)
                output.metrics["max_l0"] = l0.max()
                output.metrics["min_l0"] = l0.min()
                output.metrics["residual_norm"] = residual_norm.mean()
                output.metrics["residual_threshold_converged_portion"] = (
                    (residual_norm < self.cfg.residual_threshold).to(residual_norm.dtype).mean()
                )
        return output
