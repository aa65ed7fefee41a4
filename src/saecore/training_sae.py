"""The TrainingSAE base class: what a training recipe implements.

The trainer calls ``training_forward_pass`` once per step and knows nothing else about
the architecture. A recipe implements ``encode_with_hidden_pre``, ``calculate_aux_loss``
and ``get_coefficients``; a recipe with a faster fused path (sparse TopK) overrides
``training_forward_pass`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import torch

from saecore import resolver
from saecore.config.sae_config import TrainingSAEConfig
from saecore.io.format import SAE_WEIGHTS_FILENAME
from saecore.io.sae_files import check_tensors_match, read_safetensors, save_sae_files
from saecore.sae import SAE

TC = TypeVar("TC", bound=TrainingSAEConfig)


class TrainCoefficientConfig(NamedTuple):
    """A loss coefficient that ramps linearly from 0 over ``warm_up_steps`` steps."""

    value: float
    warm_up_steps: int


@dataclass
class TrainStepInput:
    """One step's batch and schedule values.

    ``target`` is what the output must match: for an SAE its own input (the default), for
    a transcoder the activation at its output hook, row-aligned with ``sae_in``.
    ``accelerator_support_route`` lets a step whose density is known without a count take
    the support route on a device other than the CPU (``TrainerConfig`` field of that name).
    """

    sae_in: torch.Tensor
    coefficients: dict[str, float]
    dead_neuron_mask: torch.Tensor | None
    n_training_steps: int
    is_logging_step: bool = False
    target: torch.Tensor = None  # type: ignore[assignment]
    accelerator_support_route: bool = False

    def __post_init__(self) -> None:
        if self.target is None:
            self.target = self.sae_in


@dataclass
class TrainStepOutput:
    """What one training forward pass produced.

    ``firing_counts`` (how many inputs of the batch each latent fired on) may be given
    by sparse recipes that never build dense activations; otherwise the trainer counts
    ``feature_acts != 0`` (a signed architecture fires in both directions).

    ``FORWARD_ONLY_FIELDS`` names the tensors that nothing reads once the forward pass
    has returned. A recipe that returns a subclass with more of them adds their names.

    ``target`` is what ``sae_out`` was compared with (``sae_in`` unless given).
    """

    FORWARD_ONLY_FIELDS: ClassVar[tuple[str, ...]] = ("hidden_pre",)

    sae_in: torch.Tensor
    sae_out: torch.Tensor
    feature_acts: torch.Tensor
    hidden_pre: torch.Tensor | None
    loss: torch.Tensor
    losses: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)
    firing_counts: torch.Tensor | None = None
    target: torch.Tensor = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.target is None:
            self.target = self.sae_in

    def release_forward_only_fields(self) -> None:
        """Drop the ``FORWARD_ONLY_FIELDS``, so only the autograd graph still holds them.

        A dense step's graph keeps its pre-activations for backward anyway; a sparse step's
        graph keeps only the selected entries, so there this frees ``[B, d_sae]`` tensors
        before the gradients are allocated.
        """
        for name in self.FORWARD_ONLY_FIELDS:
            setattr(self, name, None)

    def latent_firing_counts(self) -> torch.Tensor:
        if self.firing_counts is not None:
            return self.firing_counts
        return (self.feature_acts != 0).reshape(-1, self.feature_acts.shape[-1]).sum(0)


def mse_loss(sae_out: torch.Tensor, sae_in: torch.Tensor) -> torch.Tensor:
    """Squared error summed over features, averaged over the batch (SAELens's convention)."""
    return (sae_out - sae_in).pow(2).sum(dim=-1).mean()


def training_step_output(
    step_input: TrainStepInput,
    sae_out: torch.Tensor,
    feature_acts: torch.Tensor,
    hidden_pre: torch.Tensor | None,
    aux_losses: dict[str, torch.Tensor],
    firing_counts: torch.Tensor | None = None,
) -> TrainStepOutput:
    """A step's output: the MSE against the target first, then the recipe's auxiliary losses, and their sum."""
    losses = {"mse_loss": mse_loss(sae_out, step_input.target), **aux_losses}
    return TrainStepOutput(
        sae_in=step_input.sae_in,
        target=step_input.target,
        sae_out=sae_out,
        feature_acts=feature_acts,
        hidden_pre=hidden_pre,
        loss=torch.stack(list(losses.values())).sum(),
        losses=losses,
        firing_counts=firing_counts,
    )


class TrainingSAE(SAE[TC]):
    """An SAE being trained; ``save_inference_model`` writes the inference SAE it becomes."""

    _builds_training_recipe: ClassVar[bool] = True

    def __init__(self, cfg: TC, use_error_term: bool = False) -> None:
        super().__init__(cfg, use_error_term=use_error_term)
        self.reshape_hook_z = False

    def initialize_weights(self) -> None:
        """Decoder rows at ``decoder_init_norm`` and ``W_enc = W_decᵀ`` (Anthropic, April 2024)."""
        super().initialize_weights()
        norm = self.cfg.decoder_init_norm
        if norm is not None and self.W_dec.device.type != "meta":
            with torch.no_grad():
                self.W_dec.data *= norm / self.W_dec.norm(dim=-1, keepdim=True)
                self.W_enc.data = self.W_dec.data.T.clone().contiguous()

    # -- the contract -------------------------------------------------------------------
    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        """Loss coefficients by name, each a constant or a warm-up schedule."""
        return {}

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(feature_acts, hidden_pre)`` for a batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement encode_with_hidden_pre()")

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Architecture-specific loss terms, added to the MSE."""
        return {}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_with_hidden_pre(x)[0]

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        return self.finish_decode(feature_acts @ self.W_dec + self.b_dec)

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        feature_acts, hidden_pre = self.encode_with_hidden_pre(step_input.sae_in)
        return self.finish_training_forward_pass(step_input, feature_acts, hidden_pre)

    def finish_training_forward_pass(
        self, step_input: TrainStepInput, feature_acts: torch.Tensor, hidden_pre: torch.Tensor
    ) -> TrainStepOutput:
        """The step from its activations on: decode, MSE, the recipe's auxiliary losses.

        Separate so that a recipe which computes the activations its own way and then
        finds it cannot take a faster route (``saecore.sparse``) finishes the step
        exactly as the base class does.
        """
        sae_out = self.decode(feature_acts)
        aux_losses = self.calculate_aux_loss(step_input, feature_acts, hidden_pre, sae_out)
        return training_step_output(step_input, sae_out, feature_acts, hidden_pre, aux_losses)

    @torch.no_grad()
    def log_histograms(self) -> dict[str, np.ndarray]:
        """Weight distributions to log as histograms: the decoder rows' norms (``weights/W_dec_norms``)."""
        return {"weights/W_dec_norms": self.W_dec.detach().float().norm(dim=1).cpu().numpy()}

    # -- saving ----------------------------------------------------------------------------
    def process_state_dict_for_saving_inference(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Turn training weights into the inference architecture's (fold what needs folding)."""
        self.process_state_dict_for_saving(state_dict)

    def save_inference_model(self, path: str | Path, sparsity: torch.Tensor | None = None) -> tuple[Path, Path]:
        """Save as the inference SAE this recipe produces, loadable without the training plugin."""
        state_dict = {k: v.detach().clone() for k, v in self.state_dict().items()}
        self.process_state_dict_for_saving_inference(state_dict)
        return save_sae_files(Path(path), self.cfg.to_inference_dict(), state_dict, sparsity)

    def load_weights_from_checkpoint(self, checkpoint_path: str | Path) -> None:
        """Load the weights a checkpoint folder holds (its ``sae_weights.safetensors``) into this SAE.

        SAELens's method: the weights only. Continuing a run also needs the optimizer, the
        schedules and the data position, which ``resume_from_checkpoint`` restores.
        """
        path = Path(checkpoint_path) / SAE_WEIGHTS_FILENAME
        state_dict = read_safetensors(path, device=str(self.device))
        self.process_state_dict_for_loading(state_dict)
        check_tensors_match(self.state_dict(), state_dict, self.cfg.to_dict(), str(path))
        self.load_state_dict(state_dict)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], use_error_term: bool = False) -> TrainingSAE[Any]:
        """Build the training SAE of the recipe named by ``config_dict["architecture"]``."""
        return resolver.sae_from_dict(config_dict, use_error_term=use_error_term, training=True)
