"""The training forward pass under DistributedDataParallel.

DDP all-reduces gradients through hooks it installs when its own ``forward`` runs, but
the trainer never calls ``sae.forward`` (that is the inference path): it calls
``training_forward_pass``. :class:`TrainingForward` is the thin module whose ``forward``
is that call, so DDP sees the step the trainer takes and averages every parameter's
gradient over ranks during ``loss.backward()``.

Averaging is what makes data parallelism exact for SAEs: every recipe's loss is a mean
over the batch's rows, so the mean over W equal shards of per-shard means is the loss of
the whole global batch, and so is its gradient.

``find_unused_parameters`` stays off (it costs a graph walk per step). Every parameter
of the built-in recipes receives a gradient each step (TopK's sparse backward returns
dense gradients for W_enc, b_enc and b_dec); a recipe that skips a parameter on some
steps makes DDP raise on the following step, naming the parameter, and
``TrainerConfig.ddp_find_unused_parameters`` turns the walk on for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from saecore.distributed.context import DistributedContext
from saecore.training_sae import TrainingSAE, TrainStepInput, TrainStepOutput

TrainingStep = Callable[[TrainStepInput], TrainStepOutput]


class TrainingForward(nn.Module):
    """``forward(step_input) = sae.training_forward_pass(step_input)``, as a module DDP can wrap."""

    def __init__(self, sae: TrainingSAE[Any]) -> None:
        super().__init__()
        self.sae = sae

    def forward(self, step_input: TrainStepInput) -> TrainStepOutput:
        return self.sae.training_forward_pass(step_input)


def training_step_function(
    sae: TrainingSAE[Any], context: DistributedContext, device: torch.device, *, find_unused_parameters: bool = False
) -> TrainingStep:
    """The callable the trainer runs each step: the SAE's own method, or DDP around it.

    Wrapping broadcasts rank 0's weights and buffers to every rank, so all ranks start
    from the same SAE even if they initialised differently.
    """
    if not context.is_distributed:
        return sae.training_forward_pass
    wrapped = DistributedDataParallel(
        TrainingForward(sae),
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )
    step: TrainingStep = wrapped
    return step
