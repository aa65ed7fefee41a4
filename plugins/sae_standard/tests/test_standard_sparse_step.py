"""At low density the standard step runs through the active entries, with the plain formula's loss and gradients.

A negative encoder bias keeps about 2% of the pre-activations positive, under the
density limit, so the step must take the support route: one dense product (the encoder)
where the dense step runs five. At the initial density (about half active) it must not.
Either way the loss, every parameter gradient and the outputs are those of the formula,
written here in plain float64 ops.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from saecore import TrainingSAE
from saecore.testing import MatmulCounter, reference_normalization
from saecore.training_sae import TrainStepInput, TrainStepOutput

BATCH, D_IN, D_SAE = 64, 24, 128
L1 = 0.7
SPARSE_BIAS = -2.1  # the pre-activations are about N(0, 1): P(h > 0) ≈ 1.8%
ENCODER = BATCH * D_IN * D_SAE


def make_sae(dtype: torch.dtype = torch.float64, b_enc: float = SPARSE_BIAS, **cfg: Any) -> TrainingSAE[Any]:
    fields = {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "l1_coefficient": L1, **cfg}
    sae = TrainingSAE.from_dict(fields).to(dtype)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=generator, dtype=torch.float64) / D_IN**0.5)
        sae.W_dec.copy_(torch.randn(D_SAE, D_IN, generator=generator, dtype=torch.float64) * 0.3)
        sae.b_dec.copy_(torch.randn(D_IN, generator=generator, dtype=torch.float64) * 0.1)
        sae.b_enc.copy_(b_enc + 0.1 * torch.randn(D_SAE, generator=generator, dtype=torch.float64))
    return sae


def batch(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(3), dtype=dtype)


def step(sae: TrainingSAE[Any], x: torch.Tensor) -> TrainStepOutput:
    out = sae.training_forward_pass(TrainStepInput(x, {"l1": L1}, None, 0))
    out.loss.backward()
    return out


def sparse_step(sae: TrainingSAE[Any], x: torch.Tensor) -> TrainStepOutput:
    """A step that must take the support route: the encoder is its one dense product."""
    with MatmulCounter() as counter:
        out = step(sae, x)
    assert counter.multiply_adds.count(ENCODER) == 1
    return out


def reference(p: dict[str, torch.Tensor], x: torch.Tensor, apply_b_dec: bool, norm: str, lp: float) -> tuple[
    torch.Tensor, torch.Tensor, torch.Tensor
]:
    """``(loss, feature_acts, sae_out)`` in float64: MSE + L1 of the decoder-norm-weighted activations."""
    x_n, undo = reference_normalization(x, norm)
    x_c = x_n - p["b_dec"] if apply_b_dec else x_n
    acts = torch.clamp(x_c @ p["W_enc"] + p["b_enc"], min=0)
    sae_out = undo(acts @ p["W_dec"] + p["b_dec"])
    weighted = acts * p["W_dec"].pow(2).sum(1).sqrt()
    penalty = torch.linalg.vector_norm(weighted, ord=lp, dim=-1)  # its gradient at an all-zero row is zero
    return (sae_out - x).pow(2).sum(-1).mean() + L1 * penalty.mean(), acts, sae_out


def dense_products(sae: TrainingSAE[Any], x: torch.Tensor) -> list[int]:
    with MatmulCounter() as counter:
        step(sae, x)
    return [size for size in counter.multiply_adds if size == ENCODER]


def test_low_density_takes_the_support_route_and_high_density_does_not() -> None:
    x = batch(torch.float32)
    sparse = make_sae(torch.float32)
    density = (sparse.encode(x) > 0).float().mean()
    assert 0.005 < density < 1 / 16
    assert dense_products(sparse, x) == [ENCODER]
    assert dense_products(make_sae(torch.float32, b_enc=0.0), x) == [ENCODER] * 5


@pytest.mark.parametrize(
    ("apply_b_dec", "norm", "lp"),
    [(True, "none", 1.0), (False, "none", 1.0), (True, "constant_norm_rescale", 1.0), (True, "layer_norm", 2.0)],
)
def test_loss_gradients_and_outputs_match_float64_reference(apply_b_dec: bool, norm: str, lp: float) -> None:
    sae = make_sae(apply_b_dec_to_input=apply_b_dec, normalize_activations=norm, lp_norm=lp)
    x = batch()
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in sae.named_parameters()}
    expected, acts, sae_out = reference(ref, x, apply_b_dec, norm, lp)
    expected.backward()
    assert 0 < (acts > 0).double().mean() < 1 / 16

    out = sparse_step(sae, x)
    torch.testing.assert_close(out.loss, expected.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.losses["mse_loss"] + out.losses["l1_loss"], expected.detach(), rtol=1e-10,
                               atol=1e-12)
    torch.testing.assert_close(out.feature_acts, acts.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.sae_out, sae_out.detach(), rtol=1e-10, atol=1e-12)
    assert torch.equal(out.latent_firing_counts(), (acts > 0).sum(0))
    for name, param in sae.named_parameters():
        torch.testing.assert_close(param.grad, ref[name].grad, rtol=1e-9, atol=1e-11, msg=name)


def test_float32_step_matches_float64_reference_to_float32_tolerance() -> None:
    sae = make_sae(torch.float32)
    x = batch(torch.float32)
    ref = {k: v.detach().double().requires_grad_(True) for k, v in sae.named_parameters()}
    expected, _, _ = reference(ref, x.double(), True, "none", 1.0)
    expected.backward()

    out = sparse_step(sae, x)
    torch.testing.assert_close(out.loss.double(), expected.detach(), rtol=1e-5, atol=1e-6)
    for name, param in sae.named_parameters():
        torch.testing.assert_close(param.grad.double(), ref[name].grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_frozen_b_dec_gets_no_gradient_on_the_support_route() -> None:
    sae = make_sae()
    sae.b_dec.requires_grad_(False)
    x = batch()
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in sae.named_parameters()}
    reference(ref, x, True, "none", 1.0)[0].backward()

    sparse_step(sae, x)
    assert sae.b_dec.grad is None
    for name, param in sae.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param.grad, ref[name].grad, rtol=1e-9, atol=1e-11, msg=name)


def test_a_hook_on_the_activations_keeps_the_dense_step() -> None:
    sae = make_sae(torch.float32)
    sae.hook_sae_acts_post.add_hook(lambda acts, hook: acts)
    assert dense_products(sae, batch(torch.float32)) == [ENCODER] * 5
