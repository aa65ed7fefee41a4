"""The gated step over the gate's support: the dense step's loss, activations and gradients.

With a negative ``b_gate`` few entries have ``π > 0``; the step must then run its only
``B × d_in × d_sae`` product, the encoder, and do the two decodes and every gradient over
the support. Everything is compared with the gated objective written in plain float64 ops
(``reference_losses`` of test_gated_training.py), which knows nothing of supports.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from saecore_sae_gated.gated_sae import GatedTrainingSAE, GatedTrainingSAEConfig
from test_gated_training import reference_losses

from saecore.sparse import SPARSE_TRAINING_MAX_DENSITY
from saecore.testing import MatmulCounter
from saecore.training_sae import TrainStepInput, TrainStepOutput

BATCH, D_IN, D_SAE = 64, 24, 128
L1 = 0.7
SPARSE_GATE_BIAS = -2.1  # x_c W_enc is about N(0, 1): P(π > 0) ≈ 1.8%
ENCODER = BATCH * D_IN * D_SAE
Tensors = dict[str, torch.Tensor]


def make_sae(dtype: str = "float64", b_gate: float = SPARSE_GATE_BIAS, **cfg: Any) -> GatedTrainingSAE:
    """Magnitude biases around −2, so inside the open gate some magnitudes are positive and some clipped."""
    sae = GatedTrainingSAE(GatedTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, dtype=dtype, l1_coefficient=L1, **cfg))
    generator = torch.Generator().manual_seed(5)

    def noise(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    with torch.no_grad():
        sae.W_enc.copy_(noise(D_IN, D_SAE) / D_IN**0.5)
        sae.W_dec.copy_(noise(D_SAE, D_IN) * 0.3)
        sae.b_dec.copy_(noise(D_IN) * 0.1)
        sae.b_gate.copy_(b_gate + 0.1 * noise(D_SAE))
        sae.r_mag.copy_(0.3 * noise(D_SAE))
        sae.b_mag.copy_(-2.0 + 0.8 * noise(D_SAE))
    return sae


def batch(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(3), dtype=dtype)


def step(sae: GatedTrainingSAE, x: torch.Tensor) -> TrainStepOutput:
    out = sae.training_forward_pass(TrainStepInput(x, {"l1": L1}, None, 0))
    out.loss.backward()
    return out


def dense_products(sae: GatedTrainingSAE, x: torch.Tensor) -> list[int]:
    with MatmulCounter() as counter:
        step(sae, x)
    return [size for size in counter.multiply_adds if size == ENCODER]


def sparse_step(sae: GatedTrainingSAE, x: torch.Tensor) -> TrainStepOutput:
    """A step that must take the support route: the encoder is its one dense product."""
    with MatmulCounter() as counter:
        out = step(sae, x)
    assert counter.multiply_adds.count(ENCODER) == 1
    return out


def reference(sae: GatedTrainingSAE, x: torch.Tensor, mode: str) -> tuple[Tensors, Tensors]:
    """``(float64 leaf parameters holding the reference gradients, the reference losses)``."""
    params = {name: p.detach().double().requires_grad_(True) for name, p in sae.named_parameters()}
    apply_b_dec = sae.cfg.apply_b_dec_to_input
    losses = reference_losses(params, x.double(), L1, apply_b_dec, mode)
    sum(losses.values()).backward()  # type: ignore[union-attr]
    return params, losses


def reference_acts(sae: GatedTrainingSAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(π, f)`` without normalisation, from the formula."""
    p = {name: t.detach().double() for name, t in sae.named_parameters()}
    x_c = x.double() - p["b_dec"] if sae.cfg.apply_b_dec_to_input else x.double()
    gate = x_c @ p["W_enc"] + p["b_gate"]
    magnitude = x_c @ (p["W_enc"] * p["r_mag"].exp()) + p["b_mag"]
    return gate, (gate > 0).double() * torch.clamp(magnitude, min=0)


def test_the_test_state_is_sparse_with_open_gates_of_both_kinds() -> None:
    gate, acts = reference_acts(make_sae(), batch())
    assert 0.005 < (gate > 0).double().mean() < SPARSE_TRAINING_MAX_DENSITY
    open_gate = gate > 0
    assert (acts[open_gate] > 0).any() and (acts[open_gate] == 0).any()  # the magnitude's ReLU both ways


def test_low_density_takes_the_support_route_and_high_density_does_not() -> None:
    x = batch(torch.float32)
    assert dense_products(make_sae("float32"), x) == [ENCODER]
    assert dense_products(make_sae("float32", b_gate=0.0), x) == [ENCODER] * 8


@pytest.mark.parametrize("point", ["hook_sae_acts_pre", "hook_sae_acts_post"])
def test_a_hook_on_the_activations_keeps_the_dense_step(point: str) -> None:
    sae = make_sae("float32")
    getattr(sae, point).add_hook(lambda acts, hook: acts)
    assert dense_products(sae, batch(torch.float32)) == [ENCODER] * 8


@pytest.mark.parametrize(
    ("apply_b_dec", "mode"),
    [(True, "none"), (False, "none"), (True, "constant_norm_rescale"), (True, "layer_norm"), (False, "layer_norm")],
)
def test_losses_activations_and_gradients_match_float64_reference(apply_b_dec: bool, mode: str) -> None:
    sae = make_sae(apply_b_dec_to_input=apply_b_dec, normalize_activations=mode)
    x = batch()
    params, expected = reference(sae, x, mode)

    out = sparse_step(sae, x)
    assert set(out.losses) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(out.losses[name], value.detach(), rtol=1e-10, atol=1e-12, msg=name)
    torch.testing.assert_close(out.loss, sum(v.detach() for v in expected.values()), rtol=1e-10, atol=1e-12)
    for name, param in sae.named_parameters():
        assert param.grad is not None, name
        torch.testing.assert_close(param.grad, params[name].grad, rtol=1e-9, atol=1e-11, msg=name)
    assert sae.b_gate.grad.abs().sum() > 0 and sae.r_mag.grad.abs().sum() > 0


def test_feature_acts_output_and_firing_counts_match_the_formula() -> None:
    sae = make_sae()
    x = batch()
    _, acts = reference_acts(sae, x)
    p = {name: t.detach() for name, t in sae.named_parameters()}

    out = sparse_step(sae, x)
    torch.testing.assert_close(out.feature_acts, acts, rtol=1e-12, atol=1e-12)
    assert not out.feature_acts.requires_grad
    torch.testing.assert_close(out.sae_out, acts @ p["W_dec"] + p["b_dec"], rtol=1e-10, atol=1e-12)
    assert out.hidden_pre is None
    assert torch.equal(out.latent_firing_counts(), (acts > 0).sum(0))


def test_float32_step_matches_float64_reference_to_float32_tolerance() -> None:
    sae = make_sae("float32")
    x = batch(torch.float32)
    params, expected = reference(sae, x, "none")

    out = sparse_step(sae, x)
    torch.testing.assert_close(out.loss.double(), sum(v.detach() for v in expected.values()), rtol=1e-5, atol=1e-6)
    for name, param in sae.named_parameters():
        torch.testing.assert_close(param.grad.double(), params[name].grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_frozen_b_dec_gets_no_gradient_on_the_support_route() -> None:
    sae = make_sae()
    sae.b_dec.requires_grad_(False)
    x = batch()
    params, _ = reference(sae, x, "none")

    sparse_step(sae, x)
    assert sae.b_dec.grad is None
    for name, param in sae.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param.grad, params[name].grad, rtol=1e-9, atol=1e-11, msg=name)


def test_three_dimensional_inputs_take_the_route_with_the_same_loss() -> None:
    sae = make_sae()
    x = batch()
    flat_loss = sparse_step(sae, x).loss.detach()
    sae.zero_grad()
    out = sparse_step(sae, x.reshape(4, BATCH // 4, D_IN))
    assert out.sae_out.shape == (4, BATCH // 4, D_IN)
    torch.testing.assert_close(out.loss.detach(), flat_loss, rtol=1e-12, atol=1e-12)


def test_a_batch_with_every_gate_closed_takes_the_route_and_trains_only_the_decoder_bias() -> None:
    sae = make_sae(b_gate=-50.0)
    x = batch()
    params, expected = reference(sae, x, "none")

    out = sparse_step(sae, x)
    torch.testing.assert_close(out.loss, sum(v.detach() for v in expected.values()), rtol=1e-10, atol=1e-12)
    assert out.losses["l1_loss"].item() == 0.0
    for name, param in sae.named_parameters():
        torch.testing.assert_close(param.grad, params[name].grad, rtol=1e-9, atol=1e-11, msg=name)
        assert (param.grad.abs().sum() > 0) == (name == "b_dec"), name
