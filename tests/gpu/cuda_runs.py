"""What the CUDA checks share: the skip reason, and a few training steps of a recipe on a device.

A run trains a recipe's case (``recipe_cases``) for ``STEPS`` steps of ``BATCH`` rows of
fixed data, in float32 or under bfloat16 autocast, saves the inference SAE and loads it
back on the same device. Two runs from the same seed start from the same weights and see
the same batches in the same order, so a CUDA run and a CPU run differ only by the
device's arithmetic (and by the route: CUDA steps are dense, CPU steps may take the
support route).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from recipe_cases import D_IN, RECIPE_CASES, make_training_sae, output_width

from saecore.sae import SAE
from saecore.sources.in_memory import TensorSource, TensorSourceConfig
from saecore.training import SAETrainer, TrainerConfig
from saecore.training.coefficients import CoefficientSchedule
from saecore.training_sae import TrainingSAE, TrainStepInput

NO_CUDA = "needs a CUDA device: torch.cuda.is_available() is False (benchmarks/gpu_check.sh runs these on a GPU)"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)

STEPS = 3
BATCH = 64
LR = 1e-3


def fixed_rows(recipe: str, n_rows: int, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inputs ``[n_rows, d_in]`` and, for a transcoder, targets ``[n_rows, d_out]``, the same on every call."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n_rows, D_IN, generator=generator)
    targets = torch.randn(n_rows, output_width(recipe), generator=generator)
    return inputs, targets if "d_out" in RECIPE_CASES[recipe] else None


class FirstStep(NamedTuple):
    loss: float
    grads: dict[str, torch.Tensor]
    sparse_activations: bool
    """Whether the step returned its activations as a sparse tensor (the support route's, off logging steps)."""


def first_step(
    recipe: str, device: str, *, autocast: bool, logging_step: bool = True, accelerator_support_route: bool = False
) -> FirstStep:
    """The loss and the parameters' gradients of one step from the seeded weights, on ``device``."""
    sae = make_training_sae(recipe).to(device)
    inputs, targets = fixed_rows(recipe, BATCH)
    step_input = TrainStepInput(
        sae_in=inputs.to(device),
        target=None if targets is None else targets.to(device),  # type: ignore[arg-type]
        coefficients=CoefficientSchedule(sae.get_coefficients()).at(10**6),
        dead_neuron_mask=(torch.arange(sae.cfg.d_sae) % 3 == 0).to(device),
        n_training_steps=0,
        is_logging_step=logging_step,
        accelerator_support_route=accelerator_support_route,
    )
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast):
        output = sae.training_forward_pass(step_input)
    output.loss.backward()
    grads = {name: p.grad.detach().cpu() for name, p in sae.named_parameters() if p.grad is not None}
    return FirstStep(float(output.loss.detach()), grads, output.feature_acts.is_sparse)


def trained_and_reloaded(recipe: str, device: str, folder: Path, *, autocast: bool) -> SAE[Any]:
    """``STEPS`` trainer steps on ``device``, the inference SAE saved to ``folder`` and loaded back there."""
    sae: TrainingSAE[Any] = make_training_sae(recipe)
    inputs, targets = fixed_rows(recipe, BATCH * (STEPS + 1))
    source = TensorSource(TensorSourceConfig(data=inputs, target=targets, shuffle=False), device=device)
    cfg = TrainerConfig(
        training_tokens=STEPS * BATCH, train_batch_size_tokens=BATCH, lr=LR, device=device, autocast=autocast,
        n_eval_batches=1, dead_feature_window=1, output_path=None, checkpoint_path=None, verbose=False,
    )
    trained = SAETrainer(cfg, sae, source).fit()
    trained.save_inference_model(folder)
    return SAE.load_from_disk(folder, device=device)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    denominator = a.norm() * b.norm()
    return 1.0 if float(denominator) == 0.0 else float(a @ b / denominator)
