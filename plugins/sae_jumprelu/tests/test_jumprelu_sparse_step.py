"""At low density the JumpReLU step runs through its support, with the plain formula's loss and gradients.

High thresholds (about 2 standard deviations of the pre-activations) leave about 2% of
the entries active, and with a wide bandwidth about as many more in the estimators'
window ``|h − θ| < ε/2`` below the threshold: there ``f = 0`` but ``∂L/∂f`` still reaches
``θ`` (and ``h`` with ``jumprelu_ste_to_input``), so the support route must include them.
The step must then run one dense product (the encoder) where the dense step runs five,
and give the loss and every gradient of the formula, written here in float64 with the
straight-through estimators as zero-valued surrogates.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from saecore_sae_jumprelu.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig, _estimator_support

from saecore.testing import MatmulCounter
from saecore.training_sae import TrainStepInput, TrainStepOutput

BATCH, D_IN, D_SAE = 64, 24, 128
BANDWIDTH = 0.6
HIGH_THRESHOLD = 2.1  # the pre-activations are about N(0, 1): P(h > θ) ≈ 1.8%, P(h > θ − ε/2) ≈ 3.6%
L0_COEFFICIENT = 0.3
TANH_SCALE = 4.0
ENCODER = BATCH * D_IN * D_SAE


def make_sae(dtype: str = "float64", threshold: float = HIGH_THRESHOLD, **cfg: Any) -> JumpReLUTrainingSAE:
    fields: dict[str, Any] = {"jumprelu_bandwidth": BANDWIDTH, "l0_coefficient": L0_COEFFICIENT, **cfg}
    sae = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, dtype=dtype, **fields))
    generator = torch.Generator().manual_seed(9)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=generator, dtype=torch.float64) / D_IN**0.5)
        sae.W_dec.copy_(torch.randn(D_SAE, D_IN, generator=generator, dtype=torch.float64) * 0.3)
        sae.b_dec.copy_(torch.randn(D_IN, generator=generator, dtype=torch.float64) * 0.1)
        sae.b_enc.copy_(torch.randn(D_SAE, generator=generator, dtype=torch.float64) * 0.1)
        sae.threshold.copy_(threshold + 0.1 * torch.randn(D_SAE, generator=generator, dtype=torch.float64))
    return sae


def batch(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(4), dtype=dtype)


def step(sae: JumpReLUTrainingSAE, x: torch.Tensor, dead: torch.Tensor | None = None) -> TrainStepOutput:
    out = sae.training_forward_pass(TrainStepInput(x, {"l0": L0_COEFFICIENT}, dead, 0))
    out.loss.backward()
    return out


def sparse_step(sae: JumpReLUTrainingSAE, x: torch.Tensor) -> TrainStepOutput:
    """A step that must take the support route: the encoder is its one dense product."""
    with MatmulCounter() as counter:
        out = step(sae, x)
    assert counter.multiply_adds.count(ENCODER) == 1
    return out


def reference(
    p: dict[str, torch.Tensor], x: torch.Tensor, cfg: JumpReLUTrainingSAEConfig, dead: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, feature_acts)`` in float64.

    ``shift`` is zero in value with the derivative of ``h − θ`` (of ``−θ`` alone unless the
    estimators reach the input), so ``(θ/ε)·rect·shift`` and ``(rect/ε)·shift`` carry the
    JumpReLU and step estimators without changing any value.
    """
    x_n, undo = x, (lambda y: y)
    if cfg.normalize_activations == "constant_norm_rescale":
        scale = D_IN**0.5 / x.pow(2).sum(-1, keepdim=True).sqrt()
        x_n, undo = x * scale, (lambda y: y / scale)
    x_c = x_n - p["b_dec"] if cfg.apply_b_dec_to_input else x_n
    h = x_c @ p["W_enc"] + p["b_enc"]
    theta = p["threshold"].double()
    above = (h > theta).double()
    rect = (((h - theta) / BANDWIDTH).abs() < 0.5).double()
    shift = -(theta - theta.detach())
    if cfg.jumprelu_ste_to_input:
        shift = shift + (h - h.detach())
    acts = h * above + (theta.detach() / BANDWIDTH) * rect * shift
    norms = p["W_dec"].pow(2).sum(1).sqrt()
    mode = cfg.jumprelu_sparsity_loss_mode
    if mode == "tanh":
        per_item = torch.tanh(TANH_SCALE * acts * norms).sum(-1)
    else:
        l0 = (above + rect / BANDWIDTH * shift).sum(-1)
        per_item = l0 if mode == "step" else (2 / cfg.target_l0) * (l0 - cfg.target_l0).pow(2)
    sae_out = undo(acts @ p["W_dec"] + p["b_dec"])
    loss = (sae_out - x).pow(2).sum(-1).mean() + L0_COEFFICIENT * per_item.mean()
    if cfg.pre_act_loss_coefficient is not None and dead is not None:
        below = torch.clamp(theta - h, min=0) * dead.double() * norms
        loss = loss + cfg.pre_act_loss_coefficient * below.sum(-1).mean()
    return loss, acts.detach()


def reference_of(sae: JumpReLUTrainingSAE, x: torch.Tensor, dead: torch.Tensor | None = None) -> tuple[
    dict[str, torch.Tensor], torch.Tensor, torch.Tensor
]:
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in sae.named_parameters()}
    loss, acts = reference(ref, x, sae.cfg, dead)
    loss.backward()
    return ref, loss.detach(), acts


def assert_gradients_match(sae: JumpReLUTrainingSAE, ref: dict[str, torch.Tensor]) -> None:
    for name, param in sae.named_parameters():
        tolerance = 1e-6 if name == "threshold" else 1e-9  # θ is a float32 parameter
        torch.testing.assert_close(param.grad.double(), ref[name].grad.double(), rtol=tolerance, atol=tolerance,
                                   msg=name)


def dense_products(sae: JumpReLUTrainingSAE, x: torch.Tensor, dead: torch.Tensor | None = None) -> list[int]:
    with MatmulCounter() as counter:
        step(sae, x, dead)
    return [size for size in counter.multiply_adds if size == ENCODER]


def test_the_window_holds_inactive_entries_so_the_estimators_are_exercised() -> None:
    sae = make_sae()
    with torch.no_grad():
        _, hidden_pre = sae.encode_with_hidden_pre(batch())
    u = (hidden_pre - sae.threshold.double()) / BANDWIDTH
    assert int(((u.abs() < 0.5) & (u <= 0)).sum()) > 50
    assert int(((u.abs() < 0.5) & (u > 0)).sum()) > 50
    assert (u > -0.5).double().mean() < 1 / 16


def test_the_support_is_every_entry_either_estimator_or_the_activation_reaches() -> None:
    sae = make_sae()
    with torch.no_grad():
        _, hidden_pre = sae.encode_with_hidden_pre(batch())
    threshold = sae.threshold.double()
    support = _estimator_support(hidden_pre, threshold, BANDWIDTH)
    expected = ((hidden_pre - threshold) / BANDWIDTH > -0.5).reshape(-1).nonzero().squeeze(1)
    assert torch.equal(support.positions, expected)


def test_low_density_takes_the_support_route_and_high_density_does_not() -> None:
    x = batch(torch.float32)
    assert dense_products(make_sae("float32"), x) == [ENCODER]
    assert dense_products(make_sae("float32", threshold=0.1), x) == [ENCODER] * 5


@pytest.mark.parametrize(
    "cfg",
    [
        {},
        {"jumprelu_ste_to_input": True},
        {"jumprelu_sparsity_loss_mode": "tanh", "jumprelu_tanh_scale": TANH_SCALE},
        {"jumprelu_sparsity_loss_mode": "quadratic", "target_l0": 1.5, "jumprelu_ste_to_input": True},
        {"apply_b_dec_to_input": False, "jumprelu_ste_to_input": True},
        {"normalize_activations": "constant_norm_rescale"},
    ],
)
def test_loss_gradients_and_outputs_match_float64_reference(cfg: dict[str, Any]) -> None:
    sae = make_sae(**cfg)
    x = batch()
    ref, expected, acts = reference_of(sae, x)
    assert ref["threshold"].grad.abs().sum() > 0

    out = sparse_step(sae, x)
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.feature_acts, acts, rtol=1e-12, atol=1e-12)
    assert torch.equal(out.latent_firing_counts(), (acts > 0).sum(0))
    assert_gradients_match(sae, ref)


def test_float32_step_matches_float64_reference_to_float32_tolerance() -> None:
    sae = make_sae("float32", jumprelu_ste_to_input=True)
    x = batch(torch.float32)
    ref = {k: v.detach().double().requires_grad_(True) for k, v in sae.named_parameters()}
    expected, _ = reference(ref, x.double(), sae.cfg)
    expected.backward()

    out = sparse_step(sae, x)
    torch.testing.assert_close(out.loss.double(), expected.detach(), rtol=1e-5, atol=1e-6)
    for name, param in sae.named_parameters():
        torch.testing.assert_close(param.grad.double(), ref[name].grad, rtol=1e-4, atol=1e-5, msg=name)


def test_pre_activation_loss_runs_sparse_without_dead_latents_and_dense_with_them() -> None:
    x = batch()
    no_dead = torch.zeros(D_SAE, dtype=torch.bool)
    sae = make_sae(pre_act_loss_coefficient=0.2)
    ref, expected, _ = reference_of(sae, x, no_dead)
    with MatmulCounter() as counter:
        out = step(sae, x, no_dead)
    assert counter.multiply_adds.count(ENCODER) == 1
    assert out.losses["pre_act_loss"] == 0
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    assert_gradients_match(sae, ref)

    dead = torch.arange(D_SAE) % 3 == 0
    sae = make_sae(pre_act_loss_coefficient=0.2)
    ref, expected, _ = reference_of(sae, x, dead)
    with MatmulCounter() as counter:
        out = step(sae, x, dead)
    assert counter.multiply_adds.count(ENCODER) == 5
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    assert_gradients_match(sae, ref)


def test_a_batch_with_an_empty_support_takes_the_route_and_gets_zero_estimator_gradients() -> None:
    sae = make_sae(threshold=50.0)  # no pre-activation comes within the window of any θ
    x = batch()
    ref, expected, acts = reference_of(sae, x)
    assert not acts.any()

    out = sparse_step(sae, x)

    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    assert not out.feature_acts.any()
    assert torch.equal(sae.threshold.grad, torch.zeros_like(sae.threshold))
    assert_gradients_match(sae, ref)
