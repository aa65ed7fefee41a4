"""The training step every recipe runs on an accelerator, checked on the CPU.

On a device other than the CPU every recipe takes its dense route (the support route is
CPU only) and the TopK kernels fall back to torch ops. A step there must not read a value
back to the host: each read waits for the device to finish all the work queued so far,
so the host stops queueing the next kernels and the device idles. Meta tensors are a
device other than the CPU that has shapes but no values, so the same dispatch runs on
them and every read back (``.item()``, ``bool(t)``, ``nonzero``, a boolean index,
``bincount``) raises.

The reads that remain by design are those about dead latents (AuxK counts them; so the
steps here get no dead mask) and those that ``READS_BY_DESIGN`` configures away
(docs/training_fast_paths.md, "Devices").
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from recipe_cases import D_IN, D_SAE, RECIPE_CASES, installed_recipes, make_training_sae, output_width
from saecore_sae_batchtopk.support_step import takes_support_route

from saecore.sources.in_memory import TensorSource, TensorSourceConfig
from saecore.sparse import latent_firing_counts, support_route_possible
from saecore.training import SAETrainer, TrainerConfig
from saecore.training.coefficients import CoefficientSchedule
from saecore.training_sae import TrainingSAE, TrainStepInput

# Configurations that avoid a read a recipe makes by design, for the no-read check.
READS_BY_DESIGN: dict[str, dict[str, Any]] = {
    # Matching pursuit's stopping rules read once per iteration whether every row has stopped.
    "matching_pursuit": {"stop_on_duplicate_support": False, "residual_threshold": 0.0},
}


def test_every_registered_recipe_has_a_case() -> None:
    assert installed_recipes() == set(RECIPE_CASES)


def _step_input(sae: TrainingSAE[Any], recipe: str, device: str | torch.device, *, dead: bool) -> TrainStepInput:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, D_IN, generator=generator).to(device)
    target = torch.randn(32, output_width(recipe), generator=generator).to(device)
    dead_mask = (torch.arange(D_SAE) % 3 == 0).to(device) if dead else None
    return TrainStepInput(
        sae_in=x,
        target=target if "d_out" in RECIPE_CASES[recipe] else None,  # type: ignore[arg-type]
        coefficients=CoefficientSchedule(sae.get_coefficients()).at(10**6),
        dead_neuron_mask=dead_mask,
        n_training_steps=0,
        is_logging_step=True,
    )


@pytest.mark.parametrize("recipe", sorted(RECIPE_CASES))
def test_the_accelerator_step_reads_nothing_back_to_the_host(recipe: str) -> None:
    """Forward, backward and firing counts, without a dead mask (AuxK's plan counts the dead latents)."""
    sae = make_training_sae(recipe, **READS_BY_DESIGN.get(recipe, {})).to("meta")
    output = sae.training_forward_pass(_step_input(sae, recipe, "meta", dead=False))
    counts = output.latent_firing_counts()
    output.loss.backward()
    assert counts.shape == (D_SAE,)
    assert all(p.grad is not None for p in sae.parameters() if p.requires_grad)


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bfloat16-autocast"])
@pytest.mark.parametrize("recipe", sorted(RECIPE_CASES))
def test_the_step_creates_no_tensor_on_the_default_device(recipe: str, autocast: bool) -> None:
    """With meta as the default device, a tensor made without ``device=`` cannot meet the CPU inputs."""
    sae = make_training_sae(recipe)
    step_input = _step_input(sae, recipe, "cpu", dead=True)
    mixed = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.device("meta"):
        with mixed:
            output = sae.training_forward_pass(step_input)
        output.loss.backward()
        counts = output.latent_firing_counts()
    assert counts.device.type == "cpu" and torch.isfinite(output.loss)
    for name, param in sae.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.dtype == param.dtype, name
            assert torch.isfinite(param.grad).all(), name


def test_firing_counts_are_the_same_counted_either_way() -> None:
    """The CPU's bincount and the scatter that other devices use give the same counts."""
    latents = torch.randint(0, 50, (40, 6))
    active = torch.rand(40, 6) > 0.3
    every = torch.ones_like(active)
    assert torch.equal(latent_firing_counts(latents, 50), torch.bincount(latents.reshape(-1), minlength=50))
    assert torch.equal(latent_firing_counts(latents, 50, every), latent_firing_counts(latents, 50))
    assert torch.equal(latent_firing_counts(latents, 50, active), torch.bincount(latents[active], minlength=50))


def test_batchtopk_takes_the_support_route_off_the_cpu_only_when_asked() -> None:
    """``accelerator_support_route`` opens the route off the CPU to steps whose density needs no count."""
    sae = make_training_sae("batchtopk").to("meta")
    default = _step_input(sae, "batchtopk", "meta", dead=False)
    asked = dataclasses.replace(default, accelerator_support_route=True)
    assert not takes_support_route(sae, default)
    assert takes_support_route(sae, asked)
    assert not support_route_possible(sae, asked)  # a route whose density is counted stays on the CPU
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert takes_support_route(sae, asked)  # CPU autocast says nothing about another device's


def test_the_trainer_hands_its_accelerator_support_route_setting_to_every_step(tmp_path: Path) -> None:
    seen: list[bool] = []
    for setting in (False, True):
        sae = make_training_sae("batchtopk")
        step = sae.training_forward_pass

        def recording_step(step_input: TrainStepInput, step: Any = step) -> Any:
            seen.append(step_input.accelerator_support_route)
            return step(step_input)

        sae.training_forward_pass = recording_step  # type: ignore[method-assign]
        rows = torch.randn(64, D_IN, generator=torch.Generator().manual_seed(2))
        cfg = TrainerConfig(
            training_tokens=2 * 16, train_batch_size_tokens=16, n_eval_batches=1, output_path=None,
            checkpoint_path=None, verbose=False, accelerator_support_route=setting,
        )
        SAETrainer(cfg, sae, TensorSource(TensorSourceConfig(data=rows))).fit()
    assert seen == [False, False, True, True]
