"""Every registered recipe trains on CUDA, in float32 and under bfloat16 autocast, and agrees with the CPU.

Each check starts both devices from the same seeded weights. The first step's loss and
gradients are compared directly (float32: to rounding; bf16: in direction), then a few
trainer steps are run, saved, loaded back, and the loaded SAEs compared. Adam moves each
weight by about ``LR`` per step whatever its gradient, so float32 weights must agree to a
tenth of ``LR``. Under bf16 a latent near a selection's cut-off may be kept on one device
and not the other, so bf16 weights are compared in direction (each tensor's cosine), as
they are between a bf16 and a float32 run on the CPU (at least 0.993 there).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cuda_runs import LR, cosine, first_step, fixed_rows, needs_cuda, trained_and_reloaded
from recipe_cases import RECIPE_CASES

pytestmark = needs_cuda

RECIPES = sorted(RECIPE_CASES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_first_step_float32_matches_the_cpu(recipe: str) -> None:
    cpu_loss, cpu_grads, _ = first_step(recipe, "cpu", autocast=False)
    cuda_loss, cuda_grads, _ = first_step(recipe, "cuda", autocast=False)
    assert cuda_loss == pytest.approx(cpu_loss, rel=1e-5)
    assert cuda_grads.keys() == cpu_grads.keys()
    for name, grad in cpu_grads.items():
        torch.testing.assert_close(cuda_grads[name], grad, rtol=1e-4, atol=1e-5, msg=f"{recipe}: ∂L/∂{name}")


@pytest.mark.parametrize("recipe", RECIPES)
def test_first_step_under_bf16_autocast_matches_the_cpu(recipe: str) -> None:
    cpu_loss, cpu_grads, _ = first_step(recipe, "cpu", autocast=True)
    cuda_loss, cuda_grads, _ = first_step(recipe, "cuda", autocast=True)
    assert cuda_loss == pytest.approx(cpu_loss, rel=3e-2)
    for name, grad in cpu_grads.items():
        assert cuda_grads[name].dtype == grad.dtype == torch.float32, name
        assert torch.isfinite(cuda_grads[name]).all(), name
        assert cosine(cuda_grads[name], grad) > 0.95, f"{recipe}: ∂L/∂{name}"


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bfloat16-autocast"])
@pytest.mark.parametrize("recipe", RECIPES)
def test_trains_saves_and_reloads_like_the_cpu(recipe: str, autocast: bool, tmp_path: Path) -> None:
    cpu = trained_and_reloaded(recipe, "cpu", tmp_path / "cpu", autocast=autocast)
    cuda = trained_and_reloaded(recipe, "cuda", tmp_path / "cuda", autocast=autocast)
    assert next(cuda.parameters()).device.type == "cuda"
    cpu_weights, cuda_weights = cpu.state_dict(), cuda.state_dict()
    assert cuda_weights.keys() == cpu_weights.keys()
    for name, weight in cpu_weights.items():
        if autocast:
            assert cosine(cuda_weights[name].cpu(), weight) > 0.98, name
        else:
            torch.testing.assert_close(cuda_weights[name].cpu(), weight, rtol=1e-3, atol=LR / 10, msg=name)
    inputs, _ = fixed_rows(recipe, 32, seed=11)
    with torch.no_grad():
        cpu_out, cuda_out = cpu(inputs), cuda(inputs.cuda()).cpu()
    assert cosine(cuda_out, cpu_out) > (0.9999 if not autocast else 0.98)


@pytest.mark.parametrize("recipe", ["batchtopk", "matryoshka_batchtopk"])
def test_support_route_on_cuda_when_asked_matches_the_cpu(recipe: str) -> None:
    """``accelerator_support_route``: the CUDA step runs over its support and gives the CPU's numbers."""
    cpu = first_step(recipe, "cpu", autocast=False, logging_step=False)
    dense = first_step(recipe, "cuda", autocast=False, logging_step=False)
    routed = first_step(recipe, "cuda", autocast=False, logging_step=False, accelerator_support_route=True)
    assert cpu.sparse_activations and routed.sparse_activations and not dense.sparse_activations
    assert routed.loss == pytest.approx(cpu.loss, rel=1e-5)
    for name, grad in cpu.grads.items():
        torch.testing.assert_close(routed.grads[name], grad, rtol=1e-4, atol=1e-5, msg=f"{recipe}: ∂L/∂{name}")
