"""Every transcoder's training step against plain float64 formulas: prediction, activations, losses, gradients.

The target is a separate tensor of width ``d_out`` unlike ``d_in``, so a step that
compared its output with its input, or dropped the skip connection, fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import transcoder_reference as reference

from saecore import TrainingSAE, TrainStepInput
from saecore.testing.architecture_conformance import randomize_parameters

D_IN, D_OUT, D_SAE, BATCH = 10, 7, 32, 24


def make(recipe: str, **fields: Any) -> Any:
    sae = TrainingSAE.from_dict({"architecture": recipe, "d_in": D_IN, "d_out": D_OUT, "d_sae": D_SAE, **fields})
    sae = sae.to(torch.float64)
    randomize_parameters(sae, seed=5)
    return sae


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(9)
    x = torch.randn(BATCH, D_IN, generator=generator, dtype=torch.float64)
    y = torch.randn(BATCH, D_OUT, generator=generator, dtype=torch.float64)
    return x, y


def step(sae: Any, x: torch.Tensor, y: torch.Tensor, coefficients: dict[str, float], dead: torch.Tensor | None = None):
    return sae.training_forward_pass(TrainStepInput(
        sae_in=x, target=y, coefficients=coefficients, dead_neuron_mask=dead, n_training_steps=0,
    ))


def gradients(sae: Any, loss: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    return dict(zip(names, torch.autograd.grad(loss, [getattr(sae, name) for name in names])))


def check_step(sae: Any, output: Any, expected: tuple, names: list[str]) -> None:
    prediction, acts, losses = expected
    torch.testing.assert_close(output.sae_out, prediction, rtol=1e-10, atol=1e-10)
    dense_acts = output.feature_acts.to_dense() if output.feature_acts.is_sparse else output.feature_acts
    torch.testing.assert_close(dense_acts, acts, rtol=1e-10, atol=1e-10)
    assert set(output.losses) == set(losses)
    for name, value in losses.items():
        torch.testing.assert_close(output.losses[name], value, rtol=1e-10, atol=1e-10)
    ours = gradients(sae, output.loss, names)
    theirs = gradients(sae, torch.stack(list(losses.values())).sum(), names)
    for name in names:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-9, atol=1e-10, msg=f"gradient of {name}")


def parameter_names(skip: bool) -> list[str]:
    return ["W_enc", "b_enc", "W_dec", "b_dec"] + (["W_skip"] if skip else [])


@pytest.mark.parametrize("recipe", ["transcoder", "skip_transcoder"])
def test_relu_step_matches_the_formulas(recipe: str) -> None:
    sae = make(recipe)
    x, y = batch()
    output = step(sae, x, y, {"l1": 0.3})
    check_step(sae, output, reference.relu_step(sae, x, y, 0.3), parameter_names("skip" in recipe))


@pytest.mark.parametrize("recipe", ["jumprelu_transcoder", "jumprelu_skip_transcoder"])
def test_jumprelu_step_matches_the_formulas(recipe: str) -> None:
    sae = make(recipe, jumprelu_bandwidth=0.5)
    x, y = batch()
    output = step(sae, x, y, {"l0": 0.2})
    check_step(sae, output, reference.jumprelu_step(sae, x, y, 0.2), parameter_names("skip" in recipe))


@pytest.mark.parametrize("recipe", ["jumprelu_transcoder", "jumprelu_skip_transcoder"])
def test_jumprelu_threshold_gradient_is_the_rectangle_estimator(recipe: str) -> None:
    """``∂L/∂θ = −Σ_b rect((h−θ)/ε)/ε · (θ·∂L/∂f + l0)/B``, and ``∂L/∂log θ = θ·∂L/∂θ``."""
    bandwidth, l0 = 0.5, 0.2
    sae = make(recipe, jumprelu_bandwidth=bandwidth)
    x, y = batch()
    output = step(sae, x, y, {"l0": l0})
    (ours,) = torch.autograd.grad(output.loss, [sae.log_threshold])
    prediction, acts, _ = reference.jumprelu_step(sae, x, y, l0)
    (grad_acts,) = torch.autograd.grad(reference.mse(prediction, y), [acts])
    with torch.no_grad():
        hidden = x @ sae.W_enc + sae.b_enc
        threshold = sae.log_threshold.exp()
        window = ((hidden - threshold).abs() / bandwidth < 0.5).to(torch.float64) / bandwidth
        grad_threshold = -(window * (threshold * grad_acts + l0 / BATCH)).sum(dim=0)
    torch.testing.assert_close(ours, threshold * grad_threshold, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("recipe", ["topk_transcoder", "topk_skip_transcoder"])
@pytest.mark.parametrize("route", ["sparse", "dense"])
def test_topk_step_matches_the_formulas_with_auxk(recipe: str, route: str) -> None:
    sae = make(recipe, k=4, aux_loss_coefficient=0.7)
    if route == "dense":  # a hook on the activations sends the step down the dense path
        sae.hook_sae_acts_post.add_hook(lambda acts, hook: acts)
    x, y = batch()
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = True
    output = step(sae, x, y, {}, dead)
    check_step(sae, output, reference.topk_step(sae, x, y, dead, 0.7), parameter_names("skip" in recipe))


@pytest.mark.parametrize("recipe", ["transcoder", "skip_transcoder", "jumprelu_transcoder", "topk_transcoder"])
def test_inference_encode_and_forward_match_the_training_step(recipe: str, tmp_path: Any) -> None:
    """The saved inference transcoder predicts what the training step predicted (folds included)."""
    from saecore import SAE

    sae = make(recipe, **({"k": 4} if "topk" in recipe else {}))
    x, y = batch()
    coefficients = {name: 0.0 for name in sae.get_coefficients()}
    with torch.no_grad():
        prediction = step(sae, x, y, coefficients).sae_out
    sae.save_inference_model(tmp_path / "saved")
    loaded = SAE.load_from_disk(tmp_path / "saved", dtype="float64")
    torch.testing.assert_close(loaded(x), prediction, rtol=1e-10, atol=1e-10)
    out, acts = loaded.forward_with_activations(x)
    torch.testing.assert_close(out, prediction, rtol=1e-10, atol=1e-10)
    assert acts.shape == (BATCH, D_SAE)
