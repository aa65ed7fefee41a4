"""The output of a training step whose activations' values at a support carry the graph."""

from __future__ import annotations

from typing import Any

import torch

from saecore.sparse.decode import decode_support
from saecore.sparse.support import Support
from saecore.training_sae import TrainingSAE, TrainStepInput, TrainStepOutput, training_step_output


def support_training_output(
    sae: TrainingSAE[Any],
    step_input: TrainStepInput,
    support: Support,
    values: torch.Tensor,
    feature_acts: torch.Tensor,
    hidden_pre: torch.Tensor,
    aux_losses: dict[str, torch.Tensor],
    firing: torch.Tensor,
) -> TrainStepOutput:
    """Decode ``values`` at ``support``, then the MSE and ``aux_losses`` as the dense step reports them.

    The dense activations and pre-activations are returned detached: the trainer only
    reads them, and their own graph (the dense route's) is never differentiated.
    """
    decoded = decode_support(values, support, sae.W_dec).reshape(*hidden_pre.shape[:-1], sae.W_dec.shape[1])
    sae_out = sae.finish_decode(decoded + sae.b_dec)
    return training_step_output(step_input, sae_out, feature_acts.detach(), hidden_pre.detach(), aux_losses, firing)
