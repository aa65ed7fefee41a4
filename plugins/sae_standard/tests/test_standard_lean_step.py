"""The standard training step does the matmul minimum, with the gradients of the plain formula.

A dense step needs 5 products of the size ``B × d_in × d_sae``: the encoder
(``x_c W_enc``), the decoder (``f W_dec``), and in backward ``∂L/∂f = ∂L/∂x̂ · W_decᵀ``,
``∂W_dec = fᵀ ∂L/∂x̂`` and ``∂W_enc = x_cᵀ ∂L/∂h``. Nothing needs ``∂L/∂x_c``: the batch is
data, and ``b_dec``'s share of it, ``−W_enc Σ_b ∂L/∂h_b``, is one matrix-vector product. A
sixth dense product would be autograd differentiating the encoder input again.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from saecore import TrainingSAE
from saecore.testing import MatmulCounter, reference_normalization
from saecore.testing.architecture_conformance import randomize_parameters
from saecore.training_sae import TrainStepInput

BATCH, D_IN, D_SAE = 5, 8, 24
L1 = 0.7
NORMS = ["none", "constant_norm_rescale", "layer_norm"]

def make_sae(dtype: torch.dtype = torch.float64, **cfg: Any) -> TrainingSAE[Any]:
    fields = {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "l1_coefficient": L1, **cfg}
    sae = TrainingSAE.from_dict(fields).to(dtype)
    randomize_parameters(sae, seed=11)
    with torch.no_grad():
        sae.b_dec.mul_(20)  # the size of the inputs, as a mean-initialised b_dec is
    return sae


def batch(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(3), dtype=dtype) + 1


def step(sae: TrainingSAE[Any], x: torch.Tensor) -> torch.Tensor:
    out = sae.training_forward_pass(TrainStepInput(x, {"l1": L1}, None, 0))
    out.loss.backward()
    return out.loss


def reference_loss(p: dict[str, torch.Tensor], x: torch.Tensor, apply_b_dec: bool, norm: str) -> torch.Tensor:
    """The standard objective in plain float64 ops, normalisation spelled out."""
    x_n, undo = reference_normalization(x, norm)
    x_c = x_n - p["b_dec"] if apply_b_dec else x_n
    acts = torch.clamp(x_c @ p["W_enc"] + p["b_enc"], min=0)
    recons = undo(acts @ p["W_dec"] + p["b_dec"])
    l1 = (acts * p["W_dec"].pow(2).sum(1).sqrt()).sum(-1).mean()
    return (recons - x).pow(2).sum(-1).mean() + L1 * l1


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("norm", NORMS)
def test_step_runs_five_dense_products_and_one_matvec_for_b_dec(apply_b_dec: bool, norm: str) -> None:
    sae = make_sae(torch.float32, apply_b_dec_to_input=apply_b_dec, normalize_activations=norm)
    with MatmulCounter() as counter:
        step(sae, batch(torch.float32))
    dense = BATCH * D_IN * D_SAE
    expected = [D_IN * D_SAE] * apply_b_dec + [dense] * 5
    assert sorted(counter.multiply_adds) == expected


def test_under_bfloat16_autocast_the_step_stays_lean_and_close_to_float32() -> None:
    x = batch(torch.float32)
    plain = make_sae(torch.float32)
    step(plain, x)
    cast = make_sae(torch.float32)
    with MatmulCounter() as counter:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = cast.training_forward_pass(TrainStepInput(x, {"l1": L1}, None, 0)).loss
        loss.backward()
    assert sorted(counter.multiply_adds) == [D_IN * D_SAE] + [BATCH * D_IN * D_SAE] * 5
    for (name, got), want in zip(cast.named_parameters(), plain.parameters()):
        assert got.grad is not None and got.grad.dtype == torch.float32, name
        assert (got.grad - want.grad).norm() <= 0.05 * want.grad.norm(), name


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("norm", NORMS)
def test_loss_and_gradients_match_float64_reference(apply_b_dec: bool, norm: str) -> None:
    sae = make_sae(apply_b_dec_to_input=apply_b_dec, normalize_activations=norm)
    x = batch()
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in sae.named_parameters()}
    expected = reference_loss(ref, x, apply_b_dec, norm)
    expected.backward()

    torch.testing.assert_close(step(sae, x), expected.detach(), rtol=1e-10, atol=1e-12)
    for name, param in sae.named_parameters():
        torch.testing.assert_close(param.grad, ref[name].grad, rtol=1e-9, atol=1e-11, msg=name)


def test_an_input_that_asks_for_its_gradient_gets_it() -> None:
    sae = make_sae()
    x = batch().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in sae.named_parameters()}
    reference_loss(ref, x_ref, True, "none").backward()

    step(sae, x)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(sae.b_dec.grad, ref["b_dec"].grad, rtol=1e-9, atol=1e-11)


def test_a_frozen_b_dec_gets_no_gradient_and_the_rest_are_unchanged() -> None:
    sae = make_sae()
    sae.b_dec.requires_grad_(False)
    x = batch()
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in sae.named_parameters()}
    reference_loss(ref, x, True, "none").backward()

    step(sae, x)
    assert sae.b_dec.grad is None
    for name, param in sae.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param.grad, ref[name].grad, rtol=1e-9, atol=1e-11, msg=name)


def test_pre_activations_are_bit_for_bit_the_plain_formula() -> None:
    sae = make_sae(torch.float32)
    x = batch(torch.float32)
    _, hidden_pre = sae.encode_with_hidden_pre(x)
    assert torch.equal(hidden_pre, (x - sae.b_dec) @ sae.W_enc + sae.b_enc)
