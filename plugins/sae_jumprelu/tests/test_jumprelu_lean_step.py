"""The JumpReLU training step does the matmul minimum, with the gradients of the plain formula.

A dense step needs 5 products of the size ``B × d_in × d_sae``: the encoder
(``x_c W_enc``), the decoder (``f W_dec``), and in backward ``∂L/∂f = ∂L/∂x̂ · W_decᵀ``,
``∂W_dec = fᵀ ∂L/∂x̂`` and ``∂W_enc = x_cᵀ ∂L/∂h``. The threshold and the sparsity losses
are elementwise. Nothing needs ``∂L/∂x_c``: the batch is data, and ``b_dec``'s share of it,
``−W_enc Σ_b ∂L/∂h_b``, is one matrix-vector product. A sixth dense product would be
autograd differentiating the encoder input again.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from saecore_sae_jumprelu.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from torch.utils._python_dispatch import TorchDispatchMode

from saecore.testing import MatmulCounter, reference_normalization
from saecore.training_sae import TrainStepInput

BATCH, D_IN, D_SAE = 5, 8, 24
BANDWIDTH = 0.4
L0 = 0.3
NORMS = ["none", "constant_norm_rescale", "layer_norm"]

def make_sae(dtype: str = "float64", **cfg: Any) -> JumpReLUTrainingSAE:
    """Thresholds in [0.05, 0.65) and a wide bandwidth, so the STEs see many ``h``; STE to the input on."""
    fields: dict[str, Any] = {"jumprelu_bandwidth": BANDWIDTH, "jumprelu_ste_to_input": True, **cfg}
    sae = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, dtype=dtype, **fields))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            value = torch.randn(param.shape, generator=generator, dtype=torch.float64) * 0.5
            if name == "threshold":
                value = torch.rand(param.shape, generator=generator, dtype=torch.float64) * 0.6 + 0.05
            param.copy_(value)
    return sae


def batch(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(3), dtype=dtype) + 1


def step(sae: JumpReLUTrainingSAE, x: torch.Tensor) -> torch.Tensor:
    out = sae.training_forward_pass(TrainStepInput(x, {"l0": L0}, None, 0))
    out.loss.backward()
    return out.loss


def reference_loss(p: dict[str, torch.Tensor], x: torch.Tensor, apply_b_dec: bool, norm: str) -> torch.Tensor:
    """MSE + step L0 in plain float64 ops; the STEs as zero-valued surrogates (value 0, derivative the estimator)."""
    x_n, undo = reference_normalization(x, norm)
    x_c = x_n - p["b_dec"] if apply_b_dec else x_n
    h = x_c @ p["W_enc"] + p["b_enc"]
    theta = p["threshold"].double()
    above = (h > theta).double()
    rect = ((h - theta).abs() < BANDWIDTH / 2).double().detach()
    shift = (h - h.detach()) - (theta - theta.detach())  # the STEs act on h − θ
    acts = h * above + (theta.detach() / BANDWIDTH) * rect * shift
    l0 = (above + (rect / BANDWIDTH) * shift).sum(-1)
    recons = undo(acts @ p["W_dec"] + p["b_dec"])
    return (recons - x).pow(2).sum(-1).mean() + L0 * l0.mean()


def assert_gradients_match(sae: JumpReLUTrainingSAE, ref: dict[str, torch.Tensor]) -> None:
    for name, param in sae.named_parameters():
        tolerance = 1e-6 if name == "threshold" else 1e-9  # θ is a float32 parameter
        torch.testing.assert_close(param.grad.double(), ref[name].grad.double(), rtol=tolerance, atol=tolerance,
                                   msg=name)


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("norm", NORMS)
def test_step_runs_five_dense_products_and_one_matvec_for_b_dec(apply_b_dec: bool, norm: str) -> None:
    sae = make_sae("float32", apply_b_dec_to_input=apply_b_dec, normalize_activations=norm)
    with MatmulCounter() as counter:
        step(sae, batch(torch.float32))
    expected = [D_IN * D_SAE] * apply_b_dec + [BATCH * D_IN * D_SAE] * 5
    assert sorted(counter.multiply_adds) == expected


class _MaskCounter(TorchDispatchMode):
    """Counts the comparisons that form a ``[B, d_sae]`` mask: ``1[h > θ]`` (gt) and the window (lt)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = {"gt": 0, "lt": 0}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        result = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in self.counts and isinstance(result, torch.Tensor) and result.numel() == BATCH * D_SAE:
            self.counts[name] += 1
        return result


@pytest.mark.parametrize("ste_to_input", [False, True])
def test_the_dense_step_forms_each_estimator_mask_once_per_pass(ste_to_input: bool) -> None:
    """The activations and the L0 penalty share their masks: 1[h > θ] once forward and once
    backward, the window once (as two estimators, 3 and 2)."""
    sae = make_sae("float32", jumprelu_ste_to_input=ste_to_input)
    with _MaskCounter() as masks, MatmulCounter() as counter:
        step(sae, batch(torch.float32))
    assert counter.multiply_adds.count(BATCH * D_IN * D_SAE) == 5  # the dense step, not the support route
    assert masks.counts == {"gt": 2, "lt": 1}


def test_under_bfloat16_autocast_the_step_stays_lean_and_close_to_float32() -> None:
    x = batch(torch.float32)
    plain = make_sae("float32")
    step(plain, x)
    cast = make_sae("float32")
    with MatmulCounter() as counter:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = cast.training_forward_pass(TrainStepInput(x, {"l0": L0}, None, 0)).loss
        loss.backward()
    assert sorted(counter.multiply_adds) == [D_IN * D_SAE] + [BATCH * D_IN * D_SAE] * 5
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        got, want = getattr(cast, name).grad, getattr(plain, name).grad
        assert got.dtype == torch.float32, name
        assert (got - want).norm() <= 0.05 * want.norm(), name


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("norm", NORMS)
def test_loss_and_gradients_match_float64_reference(apply_b_dec: bool, norm: str) -> None:
    sae = make_sae(apply_b_dec_to_input=apply_b_dec, normalize_activations=norm)
    x = batch()
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in sae.named_parameters()}
    expected = reference_loss(ref, x, apply_b_dec, norm)
    expected.backward()

    torch.testing.assert_close(step(sae, x), expected.detach(), rtol=1e-10, atol=1e-12)
    assert_gradients_match(sae, ref)
    assert ref["threshold"].grad.abs().sum() > 0


def test_an_input_that_asks_for_its_gradient_gets_it() -> None:
    sae = make_sae()
    x = batch().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in sae.named_parameters()}
    reference_loss(ref, x_ref, True, "none").backward()

    step(sae, x)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-11)
    assert_gradients_match(sae, ref)


def test_pre_activations_are_bit_for_bit_the_plain_formula() -> None:
    sae = make_sae("float32")
    x = batch(torch.float32)
    _, hidden_pre = sae.encode_with_hidden_pre(x)
    assert torch.equal(hidden_pre, (x - sae.b_dec) @ sae.W_enc + sae.b_enc)
