"""JumpReLU SAE: ``h = x_c W_enc + b_enc``, ``f = ReLU(h)·1[h > θ]``, ``x̂ = f W_dec + b_dec``.

``θ`` (``threshold``, one per latent) is trained directly, not as ``log θ``: Adam moves a
parameter by about the learning rate per step, which on ``log θ`` barely shifts a small
threshold (SAELens issue #494). Positivity is kept by clamping ``θ ≥ 0`` before every
training forward instead. ``θ`` is held in float32 whatever the SAE dtype, because Adam's
small steps on it round away in bfloat16.

Training losses (SAELens v6), each averaged over the batch:

- ``l0_loss``, by ``jumprelu_sparsity_loss_mode``:
  ``step``: ``λ·Σ_i Step(h_i, θ_i)`` (DeepMind);
  ``quadratic``: ``λ·(2/L0*)(L0 − L0*)²`` with ``L0 = Σ_i Step(h_i, θ_i)`` (Gemma Scope 2);
  ``tanh``: ``λ·Σ_i tanh(c·f_i‖W_dec,i‖)`` (Anthropic);
- ``pre_act_loss`` (when ``pre_act_loss_coefficient`` is set): ``coef·Σ_i ReLU(θ_i − h_i)·dead_i·‖W_dec,i‖``,
  which pulls dead latents' pre-activations up towards their thresholds.

Once a batch's activations are sparse, the step runs over the entries where either
estimator or the activation itself has a gradient (``saecore.sparse``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
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
    decode_product,
    per_row_sum,
    sparse_route_support,
    support_preactivations,
    support_training_output,
)
from saecore.training_sae import TrainStepOutput, training_step_output
from saecore_sae_jumprelu.ste import JumpReLU, JumpReLUWithL0, Step, above

SparsityLossMode = Literal["step", "tanh", "quadratic"]


class JumpReLUSAEConfig(SAEConfig):
    ARCHITECTURE: ClassVar[str] = "jumprelu"


class JumpReLUTrainingSAEConfig(TrainingSAEConfig):
    ARCHITECTURE: ClassVar[str] = "jumprelu"

    jumprelu_init_threshold: float = Field(default=0.01, ge=0)
    jumprelu_bandwidth: float = Field(default=0.05, gt=0)
    jumprelu_sparsity_loss_mode: SparsityLossMode = "step"
    l0_coefficient: float = Field(default=1.0, ge=0)
    l0_warm_up_steps: int = Field(default=0, ge=0)
    pre_act_loss_coefficient: float | None = Field(default=None, ge=0)
    jumprelu_tanh_scale: float = Field(default=4.0, gt=0)
    jumprelu_ste_to_input: bool = False
    target_l0: float | None = None

    @classmethod
    def synthetic_data_presets(cls, d_sae: int) -> TrainingPresets:
        """Values that recover the synthetic source's features in 1M tokens (benchmarks/quality_synthetic.py)."""
        return TrainingPresets(sae={"l0_coefficient": 0.3}, trainer={"lr": 5e-3, "training_tokens": 1_000_000})

    @model_validator(mode="after")
    def _target_l0_fits_quadratic_mode(self) -> JumpReLUTrainingSAEConfig:
        if self.jumprelu_sparsity_loss_mode != "quadratic":
            return self
        if self.target_l0 is None:
            raise ValueError(
                "field 'target_l0' is required when jumprelu_sparsity_loss_mode='quadratic': "
                f"give the target number of active latents, in (0, d_sae={self.d_sae}]"
            )
        if not 0 < self.target_l0 <= self.d_sae:
            raise ValueError(
                f"field 'target_l0' = {self.target_l0!r} is out of range for "
                f"jumprelu_sparsity_loss_mode='quadratic': allowed (0, d_sae={self.d_sae}]"
            )
        return self


def _init_b_enc(sae: SAE[Any]) -> None:
    sae.b_enc = nn.Parameter(sae._zeros(sae.cfg.d_sae))


def _exp_log_threshold(state_dict: dict[str, torch.Tensor]) -> None:
    """SAELens 6.18 and earlier trained and saved ``log_threshold``; this architecture stores ``θ``."""
    if "log_threshold" in state_dict:
        state_dict["threshold"] = state_dict.pop("log_threshold").exp().contiguous()


@torch.no_grad()
def _fold_jumprelu_W_dec_norm(sae: SAE[Any]) -> None:
    """``h`` scales by ``‖W_dec,i‖`` once the norms are folded into the encoder; so must ``θ``."""
    norms = sae.fold_and_get_W_dec_norm()
    sae.threshold.data.mul_(norms.to(sae.threshold.dtype))


def _estimator_support(hidden_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> Support:
    """The entries with ``u = (h − θ)/ε > −½``, ``u`` computed exactly as the estimators compute it.

    One comparison with ``θ − ε`` over the dense tensor finds a superset (``u > −½`` puts
    ``h`` within ``ε/2`` of ``θ`` or above it, far inside ``θ − ε`` whatever the rounding);
    ``u`` itself is then computed on those few entries only, instead of two more passes.
    """
    d_sae = hidden_pre.shape[-1]
    flat = hidden_pre.reshape(-1)
    candidates = (hidden_pre > threshold - bandwidth).reshape(-1).nonzero().squeeze(1)
    u = (flat[candidates] - threshold[candidates % d_sae]) / bandwidth
    return Support.at_positions(candidates[u > -0.5], flat.numel() // d_sae, d_sae)


class JumpReLUSAE(SAE[JumpReLUSAEConfig]):
    b_enc: nn.Parameter
    threshold: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        _init_b_enc(self)
        self.threshold = nn.Parameter(self._zeros(self.cfg.d_sae))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        hidden_pre = self.hook_sae_acts_pre(self.process_sae_in(x) @ self.W_enc + self.b_enc)
        return self.hook_sae_acts_post(torch.relu(hidden_pre) * above(hidden_pre, self.threshold))

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        return self.finish_decode(decode_product(feature_acts, self.W_dec) + self.b_dec)

    def fold_W_dec_norm(self) -> None:
        _fold_jumprelu_W_dec_norm(self)

    def process_state_dict_for_loading(self, state_dict: dict[str, torch.Tensor]) -> None:
        _exp_log_threshold(state_dict)


class JumpReLUTrainingSAE(TrainingSAE[JumpReLUTrainingSAEConfig]):
    """Training recipe ``jumprelu``: MSE + ``l0_loss`` (+ ``pre_act_loss``)."""

    b_enc: nn.Parameter
    threshold: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        _init_b_enc(self)
        self.threshold = nn.Parameter(
            torch.full((self.cfg.d_sae,), self.cfg.jumprelu_init_threshold, dtype=torch.float32, device=self.device)
        )

    def _apply(self, *args: Any, **kwargs: Any) -> JumpReLUTrainingSAE:
        """``.to(dtype)`` casts every parameter; put ``θ`` back in float32 (see the module docstring)."""
        result = super()._apply(*args, **kwargs)
        threshold = self._parameters.get("threshold")
        if threshold is not None and threshold.dtype != torch.float32:
            threshold.data = threshold.data.float()
        return result

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        return {"l0": TrainCoefficientConfig(self.cfg.l0_coefficient, self.cfg.l0_warm_up_steps)}

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        """The dense step, or at low density the same loss through the support only.

        The support is every entry with ``u = (h − θ)/ε > −½``: the active ones (``h > θ``
        gives ``u > 0``) and the straight-through window ``|u| < ½``, where ``∂L/∂f`` reaches
        ``θ`` (and ``h`` with ``jumprelu_ste_to_input``) even though ``f = 0``. Elsewhere
        neither ``h`` nor ``θ`` gets a gradient from the entry.
        """
        # Projected on .data, not clamped in the graph: a clamp would zero θ's gradient and
        # pin for good any latent whose threshold reaches zero.
        with torch.no_grad():
            self.threshold.data.clamp_(min=0.0)
        sae_in, feature_acts, hidden_pre, l0_per_row = self._encode_for_training(step_input.sae_in)
        threshold = self.threshold.to(hidden_pre.dtype)
        bandwidth = self.cfg.jumprelu_bandwidth
        support = sparse_route_support(
            self, step_input, feature_acts,
            lambda: None if self._pre_act_loss_reaches_dead_latents(step_input)
            else _estimator_support(hidden_pre.detach(), threshold.detach(), bandwidth),
        )
        if support is None:
            return self._finish_dense_step(step_input, feature_acts, hidden_pre, l0_per_row)
        pre = support_preactivations(self, sae_in, hidden_pre, support)
        theta = threshold[support.latents]
        acts = JumpReLU.apply(pre, theta, bandwidth, self.cfg.jumprelu_ste_to_input)
        per_item = self._per_item_sparsity(acts, pre, theta, support)
        losses = {"l0_loss": (step_input.coefficients["l0"] * per_item).mean()}
        if self.cfg.pre_act_loss_coefficient is not None:
            # No latent is dead here (else the dense step runs): zero, logged as the dense step logs it.
            losses["pre_act_loss"] = self.cfg.pre_act_loss_coefficient * pre.new_zeros(())
        firing = support.firing_counts(acts.detach() != 0)
        return support_training_output(self, step_input, support, acts, feature_acts, hidden_pre, losses, firing)

    def _pre_act_loss_reaches_dead_latents(self, step_input: TrainStepInput) -> bool:
        """The pre-activation loss reaches every dead latent's entries, which only the dense step covers."""
        dead = step_input.dead_neuron_mask
        return self.cfg.pre_act_loss_coefficient is not None and dead is not None and bool(dead.any())

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, feature_acts, hidden_pre, _ = self._encode_for_training(x)
        return feature_acts, hidden_pre

    def _encode_for_training(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(x_c, feature_acts, hidden_pre, L0 per row)``: the encoder input is what the sparse ``∂W_enc`` sums.

        The L0 (``Σ_i Step(h_i, θ_i)``, what the ``step`` and ``quadratic`` penalties take)
        comes from the same masks as the activations (:class:`JumpReLUWithL0`); None for
        ``tanh``, which penalises the activations themselves.
        """
        sae_in, b_dec_term = centred_input(self, x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + (self.b_enc + b_dec_term))
        threshold, bandwidth = self.threshold.to(hidden_pre.dtype), self.cfg.jumprelu_bandwidth
        l0_per_row: torch.Tensor | None = None
        if self.cfg.jumprelu_sparsity_loss_mode == "tanh":
            feature_acts = JumpReLU.apply(hidden_pre, threshold, bandwidth, self.cfg.jumprelu_ste_to_input)
        else:
            feature_acts, l0_per_row = JumpReLUWithL0.apply(
                hidden_pre, threshold, bandwidth, self.cfg.jumprelu_ste_to_input
            )
        return sae_in, self.hook_sae_acts_post(feature_acts), hidden_pre, l0_per_row

    def _finish_dense_step(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        l0_per_row: torch.Tensor | None,
    ) -> TrainStepOutput:
        """``finish_training_forward_pass``, with the L0 the activations' masks already gave."""
        sae_out = self.decode(feature_acts)
        aux_losses = self._aux_losses(step_input, feature_acts, hidden_pre, l0_per_row)
        return training_step_output(step_input, sae_out, feature_acts, hidden_pre, aux_losses)

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        return self._aux_losses(step_input, feature_acts, hidden_pre, None)

    def _aux_losses(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        l0_per_row: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        threshold = self.threshold.to(hidden_pre.dtype)
        per_item = self._per_item_sparsity(feature_acts, hidden_pre, threshold, l0_per_row=l0_per_row)
        losses = {"l0_loss": (step_input.coefficients["l0"] * per_item).mean()}
        coefficient = self.cfg.pre_act_loss_coefficient
        if coefficient is not None:
            losses["pre_act_loss"] = coefficient * self._pre_act_loss(
                hidden_pre, threshold, step_input.dead_neuron_mask
            )
        return losses

    def _per_item_sparsity(
        self,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        threshold: torch.Tensor,
        support: Support | None = None,
        l0_per_row: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The sparsity penalty of each input, before the coefficient and the batch mean.

        With ``support``, the three tensors hold the values at its entries (``threshold``
        gathered per entry) and each input's sum runs over its entries: the terms outside
        the support are ``tanh(0) = 0`` or ``Step = 0``, with no gradient. ``l0_per_row``
        is that L0 already computed with the activations (dense step only).
        """
        cfg = self.cfg
        norms = self.W_dec.norm(dim=1) if cfg.jumprelu_sparsity_loss_mode == "tanh" else None

        def row_sum(terms: torch.Tensor) -> torch.Tensor:
            return terms.sum(dim=-1) if support is None else per_row_sum(terms, support)

        if norms is not None:
            latent_norms = norms if support is None else norms[support.latents]
            return row_sum(torch.tanh(cfg.jumprelu_tanh_scale * feature_acts * latent_norms))
        l0 = l0_per_row if l0_per_row is not None else row_sum(
            Step.apply(hidden_pre, threshold, cfg.jumprelu_bandwidth, cfg.jumprelu_ste_to_input)
        )
        if cfg.jumprelu_sparsity_loss_mode == "quadratic":
            assert cfg.target_l0 is not None  # enforced by the config validator
            return (2 / cfg.target_l0) * (l0 - cfg.target_l0).pow(2)
        return l0

    def _pre_act_loss(
        self, hidden_pre: torch.Tensor, threshold: torch.Tensor, dead_neuron_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Anthropic's pre-activation loss (before its coefficient), only over latents the trainer counts as dead."""
        if dead_neuron_mask is None or not bool(dead_neuron_mask.any()):
            return hidden_pre.new_zeros(())
        weight = dead_neuron_mask.to(hidden_pre.dtype) * self.W_dec.norm(dim=1)
        return ((threshold - hidden_pre).relu() * weight).sum(dim=-1).mean()

    def fold_W_dec_norm(self) -> None:
        _fold_jumprelu_W_dec_norm(self)

    def process_state_dict_for_loading(self, state_dict: dict[str, torch.Tensor]) -> None:
        _exp_log_threshold(state_dict)

    def process_state_dict_for_saving_inference(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Save ``max(θ, 0)``: what the next training forward would use, and the same outputs.

        After an optimiser step ``θ`` may dip below zero until the next clamp; the inference
        ``ReLU(h)·1[h > θ]`` treats any ``θ < 0`` like ``θ = 0``, so the clamp only makes the
        file state the threshold the training SAE actually applies.
        """
        super().process_state_dict_for_saving_inference(state_dict)
        state_dict["threshold"] = state_dict["threshold"].clamp(min=0.0)
