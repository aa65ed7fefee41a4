"""The gated training step does the matmul minimum, with the gradients of the plain formula.

A gated step needs 8 products of the size ``B × d_in × d_sae``. Forward: the shared
encoder product ``x_c W_enc`` (gate and magnitude), the decode ``f W_dec`` and the
auxiliary decode ``ReLU(π) W_dec``. Backward: through each decode, the gradient of its
activations (``· W_decᵀ``) and its share of ``∂W_dec``; through the encoder, ``∂W_enc =
x_cᵀ ∂L/∂(x_c W_enc)``. The two decodes act on different activations and their
activation gradients are weighted differently afterwards, so none of these can merge
into another. Nothing needs ``∂L/∂x_c``: the batch is data, and ``b_dec``'s share of it,
``−W_enc Σ_b ∂L/∂(x_c W_enc)_b``, is one matrix-vector product. A ninth dense product
would be autograd differentiating the encoder input again.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from saecore_sae_gated.gated_sae import GatedTrainingSAE, GatedTrainingSAEConfig

from saecore.testing import MatmulCounter, reference_normalization
from saecore.training_sae import TrainStepInput

BATCH, D_IN, D_SAE = 5, 8, 24
L1 = 0.7
NORMS = ["none", "constant_norm_rescale", "layer_norm"]

def make_sae(dtype: str = "float64", **cfg: Any) -> GatedTrainingSAE:
    sae = GatedTrainingSAE(GatedTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, dtype=dtype, **cfg))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            scale = 0.3 if name == "r_mag" else 0.5
            param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float64) * scale)
    return sae


def batch(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(3), dtype=dtype) + 1


def step(sae: GatedTrainingSAE, x: torch.Tensor) -> torch.Tensor:
    out = sae.training_forward_pass(TrainStepInput(x, {"l1": L1}, None, 0))
    out.loss.backward()
    return out.loss


def reference_loss(p: dict[str, torch.Tensor], x: torch.Tensor, apply_b_dec: bool, norm: str) -> torch.Tensor:
    """The gated objective in plain float64 ops: gate and magnitude un-shared, normalisation spelled out."""
    x_n, undo = reference_normalization(x, norm)
    x_c = x_n - p["b_dec"] if apply_b_dec else x_n
    gate = x_c @ p["W_enc"] + p["b_gate"]
    magnitude = x_c @ (p["W_enc"] * torch.exp(p["r_mag"])) + p["b_mag"]
    acts = (gate > 0).double() * torch.clamp(magnitude, min=0)
    recons = undo(acts @ p["W_dec"] + p["b_dec"])
    gate_acts = torch.clamp(gate, min=0)
    l1 = (gate_acts * p["W_dec"].pow(2).sum(1).sqrt()).sum(-1).mean()
    via_gate = gate_acts @ p["W_dec"] + p["b_dec"]
    return (recons - x).pow(2).sum(-1).mean() + L1 * l1 + (via_gate - x_n).pow(2).sum(-1).mean()


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("norm", NORMS)
def test_step_runs_eight_dense_products_and_one_matvec_for_b_dec(apply_b_dec: bool, norm: str) -> None:
    sae = make_sae("float32", apply_b_dec_to_input=apply_b_dec, normalize_activations=norm)
    with MatmulCounter() as counter:
        step(sae, batch(torch.float32))
    expected = [D_IN * D_SAE] * apply_b_dec + [BATCH * D_IN * D_SAE] * 8
    assert sorted(counter.multiply_adds) == expected


def test_under_bfloat16_autocast_the_step_stays_lean_and_close_to_float32() -> None:
    x = batch(torch.float32)
    plain = make_sae("float32")
    step(plain, x)
    cast = make_sae("float32")
    with MatmulCounter() as counter:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = cast.training_forward_pass(TrainStepInput(x, {"l1": L1}, None, 0)).loss
        loss.backward()
    assert sorted(counter.multiply_adds) == [D_IN * D_SAE] + [BATCH * D_IN * D_SAE] * 8
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
    for name, param in sae.named_parameters():
        torch.testing.assert_close(param.grad, ref[name].grad, rtol=1e-9, atol=1e-11, msg=name)


def test_gate_and_magnitude_are_bit_for_bit_the_shared_product() -> None:
    sae = make_sae("float32")
    x = batch(torch.float32)
    _, magnitude_pre = sae.encode_with_hidden_pre(x)
    shared = (x - sae.b_dec) @ sae.W_enc
    assert torch.equal(magnitude_pre, shared * sae.r_mag.exp() + sae.b_mag)
    out = sae.training_forward_pass(TrainStepInput(x, {"l1": L1}, None, 0))
    gate_acts = torch.relu(shared + sae.b_gate)
    assert torch.equal(out.losses["l1_loss"], L1 * (gate_acts * sae.W_dec.norm(dim=1)).sum(dim=-1).mean())
