"""JumpReLU training: the STEs, every sparsity mode and the pre-act loss against float64 references.

The reference STEs are written differently from the code under test: as "zero-valued
surrogates" ``s = k·(θ − stopgrad θ)``, whose value is 0 and whose derivative is ``k``, so
plain autograd produces the estimator's gradients.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_sae_jumprelu.jumprelu_sae import JumpReLUSAE, JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from saecore_sae_jumprelu.ste import JumpReLU, JumpReLUWithL0, Step
from safetensors.torch import load_file

from saecore import SAE, TrainCoefficientConfig, TrainStepInput

D_IN, D_SAE = 10, 16
BANDWIDTH = 0.4
L0_COEFFICIENT = 0.3
PRE_ACT_COEFFICIENT = 0.2
TANH_SCALE = 1.5


def make_training_sae(seed: int = 0, dtype: str = "float64", **cfg: Any) -> JumpReLUTrainingSAE:
    """Random weights, thresholds in [0.05, 0.65) and a wide bandwidth, so many ``h`` fall in the STE window."""
    fields: dict[str, Any] = {"jumprelu_bandwidth": BANDWIDTH, **cfg}
    sae = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, dtype=dtype, **fields))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            if name == "threshold":
                param.copy_(torch.rand(param.shape, generator=generator, dtype=torch.float64) * 0.6 + 0.05)
            else:
                param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float64) * 0.5)
    return sae


def step_input(x: torch.Tensor, dead: torch.Tensor | None = None, l0: float = L0_COEFFICIENT) -> TrainStepInput:
    return TrainStepInput(sae_in=x, coefficients={"l0": l0}, dead_neuron_mask=dead, n_training_steps=0)


def window(h: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``rect((h − θ)/ε)`` as ``|h − θ| < ε/2``, without gradient."""
    return ((h - theta).abs() < bandwidth / 2).double().detach()


def reference_jumprelu(h: torch.Tensor, theta: torch.Tensor, bandwidth: float, ste_to_input: bool) -> torch.Tensor:
    above = (h > theta).double()
    rect = window(h, theta, bandwidth)
    theta_0, h_0 = theta.detach(), h.detach()
    out = h * above - (theta_0 / bandwidth) * rect * (theta - theta_0)
    if ste_to_input:
        out = out + (theta_0 / bandwidth) * rect * (h - h_0)
    return out


def reference_step(h: torch.Tensor, theta: torch.Tensor, bandwidth: float, ste_to_input: bool) -> torch.Tensor:
    above = (h > theta).double()
    rect = window(h, theta, bandwidth)
    theta_0, h_0 = theta.detach(), h.detach()
    out = above - (rect / bandwidth) * (theta - theta_0)
    if ste_to_input:
        out = out + (rect / bandwidth) * (h - h_0)
    return out


def reference_losses(
    p: dict[str, torch.Tensor],
    x: torch.Tensor,
    mode: str,
    ste_to_input: bool,
    dead: torch.Tensor | None,
    target_l0: float | None = None,
) -> dict[str, torch.Tensor]:
    hidden_pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    theta = p["threshold"]
    feats = reference_jumprelu(hidden_pre, theta, BANDWIDTH, ste_to_input)
    recon = feats @ p["W_dec"] + p["b_dec"]
    dec_norms = p["W_dec"].pow(2).sum(dim=1).sqrt()
    if mode == "tanh":
        per_item = torch.tanh(TANH_SCALE * feats * dec_norms).sum(-1)
    else:
        l0 = reference_step(hidden_pre, theta, BANDWIDTH, ste_to_input).sum(-1)
        per_item = l0 if mode == "step" else (2 / target_l0) * (l0 - target_l0) ** 2  # type: ignore[operator]
    losses = {"mse_loss": (recon - x).pow(2).sum(-1).mean(), "l0_loss": L0_COEFFICIENT * per_item.mean()}
    if dead is not None:
        gap = torch.clamp(theta - hidden_pre, min=0)
        losses["pre_act_loss"] = PRE_ACT_COEFFICIENT * (gap * dead.double() * dec_norms).sum(-1).mean()
    return losses


@pytest.mark.parametrize("ste_to_input", [False, True])
@pytest.mark.parametrize("shape", [(6, 8), (2, 3, 8)])
def test_jumprelu_function_forward_and_gradients(ste_to_input: bool, shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(1)
    h = torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_(True)
    theta = (torch.rand(shape[-1], generator=generator, dtype=torch.float64) * 0.5).requires_grad_(True)
    g = torch.randn(shape, generator=generator, dtype=torch.float64)
    out = JumpReLU.apply(h, theta, BANDWIDTH, ste_to_input)
    out.backward(g)

    hd, td = h.detach(), theta.detach()
    rect = ((hd - td).abs() < BANDWIDTH / 2).double()
    ste = (td / BANDWIDTH) * rect * g
    torch.testing.assert_close(out.detach(), torch.where(hd > td, hd, torch.zeros_like(hd)))
    torch.testing.assert_close(theta.grad, -ste.reshape(-1, shape[-1]).sum(0))
    expected_h = (hd > td).double() * g + (ste if ste_to_input else 0.0)
    torch.testing.assert_close(h.grad, expected_h)
    assert rect.sum() > 0 and theta.grad.abs().sum() > 0


@pytest.mark.parametrize("ste_to_input", [False, True])
@pytest.mark.parametrize("shape", [(6, 8), (2, 3, 8)])
def test_step_function_forward_and_gradients(ste_to_input: bool, shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(2)
    h = torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_(True)
    theta = (torch.rand(shape[-1], generator=generator, dtype=torch.float64) * 0.5).requires_grad_(True)
    g = torch.randn(shape, generator=generator, dtype=torch.float64)
    out = Step.apply(h, theta, BANDWIDTH, ste_to_input)
    (out * g).sum().backward()

    hd, td = h.detach(), theta.detach()
    ste = ((hd - td).abs() < BANDWIDTH / 2).double() * g / BANDWIDTH
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.detach(), (hd > td).double())
    torch.testing.assert_close(theta.grad, -ste.reshape(-1, shape[-1]).sum(0))
    if ste_to_input:
        torch.testing.assert_close(h.grad, ste)
    else:
        assert h.grad is None
    assert theta.grad.abs().sum() > 0


@pytest.mark.parametrize("uses", ["both", "activations", "l0"])
@pytest.mark.parametrize("ste_to_input", [False, True])
@pytest.mark.parametrize("shape", [(6, 8), (2, 3, 8)])
def test_jumprelu_with_l0_is_jumprelu_and_the_row_sum_of_step(
    uses: str, ste_to_input: bool, shape: tuple[int, ...]
) -> None:
    """Against the float64 references of the two estimators applied separately, with either output unused."""
    generator = torch.Generator().manual_seed(3)
    h = torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_(True)
    theta = (torch.rand(shape[-1], generator=generator, dtype=torch.float64) * 0.5).requires_grad_(True)
    g_acts = torch.randn(shape, generator=generator, dtype=torch.float64) * (uses != "l0")
    g_l0 = torch.randn(shape[:-1], generator=generator, dtype=torch.float64) * (uses != "activations")
    acts, l0 = JumpReLUWithL0.apply(h, theta, BANDWIDTH, ste_to_input)
    used = {"both": [(acts, g_acts), (l0, g_l0)], "activations": [(acts, g_acts)], "l0": [(l0, g_l0)]}[uses]
    sum((out * g).sum() for out, g in used).backward()

    h_ref, theta_ref = h.detach().clone().requires_grad_(True), theta.detach().clone().requires_grad_(True)
    expected_acts = reference_jumprelu(h_ref, theta_ref, BANDWIDTH, ste_to_input)
    expected_l0 = reference_step(h_ref, theta_ref, BANDWIDTH, ste_to_input).sum(-1)
    ((expected_acts * g_acts).sum() + (expected_l0 * g_l0).sum()).backward()
    torch.testing.assert_close(acts.detach(), expected_acts.detach())
    torch.testing.assert_close(l0.detach(), expected_l0.detach())
    torch.testing.assert_close(theta.grad, theta_ref.grad)
    if uses == "l0" and not ste_to_input:
        assert h.grad is None
    else:
        torch.testing.assert_close(h.grad, h_ref.grad)
    assert theta.grad.abs().sum() > 0


@pytest.mark.parametrize("ste_to_input", [False, True])
@pytest.mark.parametrize("mode", ["step", "tanh", "quadratic"])
def test_losses_and_gradients_match_reference(mode: str, ste_to_input: bool) -> None:
    target_l0 = 5.0 if mode == "quadratic" else None
    sae = make_training_sae(
        jumprelu_sparsity_loss_mode=mode,
        jumprelu_ste_to_input=ste_to_input,
        jumprelu_tanh_scale=TANH_SCALE,
        pre_act_loss_coefficient=PRE_ACT_COEFFICIENT,
        target_l0=target_l0,
    )
    x = torch.randn(12, D_IN, dtype=torch.float64)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = True
    params = {name: p.detach().double().clone().requires_grad_(True) for name, p in sae.named_parameters()}
    expected = reference_losses(params, x, mode, ste_to_input, dead, target_l0)
    sum(expected.values()).backward()  # type: ignore[union-attr]

    out = sae.training_forward_pass(step_input(x, dead))
    out.loss.backward()

    assert set(out.losses) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(out.losses[name], value.detach(), rtol=1e-10, atol=1e-12, msg=name)
    for name, param in sae.named_parameters():
        assert param.grad is not None, name
        tolerance = 1e-6 if name == "threshold" else 1e-10  # θ is a float32 parameter
        torch.testing.assert_close(param.grad.double(), params[name].grad, rtol=tolerance, atol=tolerance, msg=name)
    assert params["threshold"].grad.abs().sum() > 0
    assert expected["pre_act_loss"] > 0


def test_pre_act_loss_is_zero_without_dead_latents_and_absent_when_disabled() -> None:
    sae = make_training_sae(pre_act_loss_coefficient=PRE_ACT_COEFFICIENT)
    x = torch.randn(5, D_IN, dtype=torch.float64)
    for dead in (None, torch.zeros(D_SAE, dtype=torch.bool)):
        assert sae.training_forward_pass(step_input(x, dead)).losses["pre_act_loss"].item() == 0.0
    plain = make_training_sae()
    assert set(plain.training_forward_pass(step_input(x, torch.ones(D_SAE, dtype=torch.bool))).losses) == {
        "mse_loss",
        "l0_loss",
    }


def test_training_forward_clamps_threshold_first() -> None:
    sae = make_training_sae(seed=3)
    with torch.no_grad():
        sae.threshold[:4] = torch.tensor([-0.3, -1.0, 0.2, -0.01])
    clamped = sae.threshold.detach().double().clamp(min=0)
    x = torch.randn(8, D_IN, dtype=torch.float64)
    out = sae.training_forward_pass(step_input(x))
    assert (sae.threshold >= 0).all()
    params = {name: p.detach().double() for name, p in sae.named_parameters()}
    params["threshold"] = clamped
    expected = reference_losses(params, x, "step", False, None)
    torch.testing.assert_close(out.losses["l0_loss"], expected["l0_loss"])


def test_threshold_starts_at_init_and_stays_float32() -> None:
    sae = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=4, d_sae=8, dtype="float64", jumprelu_init_threshold=0.2))
    assert sae.threshold.dtype == torch.float32
    torch.testing.assert_close(sae.threshold.detach(), torch.full((8,), 0.2))
    sae.to(torch.bfloat16)
    assert sae.threshold.dtype == torch.float32 and sae.W_enc.dtype == torch.bfloat16
    assert sae.cfg.dtype == "bfloat16"
    sae.training_forward_pass(step_input(torch.randn(3, 4, dtype=torch.bfloat16))).loss.backward()
    assert sae.threshold.grad is not None and sae.threshold.grad.dtype == torch.float32


def test_coefficients_follow_the_config() -> None:
    sae = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=4, d_sae=8, l0_coefficient=2.0, l0_warm_up_steps=7))
    assert sae.get_coefficients() == {"l0": TrainCoefficientConfig(2.0, 7)}


def test_save_inference_model_loads_as_jumprelu_sae(tmp_path: Path) -> None:
    sae = make_training_sae(seed=4, dtype="float32", l0_coefficient=0.5, jumprelu_sparsity_loss_mode="tanh")
    with torch.no_grad():
        sae.threshold[0] = -0.25
    sae.save_inference_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu"
    assert "l0_coefficient" not in cfg and "jumprelu_bandwidth" not in cfg
    assert cfg["metadata"]["training_architecture"] == "jumprelu"
    assert cfg["metadata"]["training_architecture_details"]["jumprelu_sparsity_loss_mode"] == "tanh"
    weights = load_file(tmp_path / "sae_weights.safetensors")
    assert set(weights) == {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}
    torch.testing.assert_close(weights["threshold"], sae.threshold.detach().clamp(min=0))

    loaded = SAE.load_from_disk(tmp_path)
    assert type(loaded) is JumpReLUSAE
    x = torch.randn(2, 3, D_IN)
    sae.training_forward_pass(step_input(x.reshape(-1, D_IN)))  # applies the clamp the file already has
    assert torch.equal(loaded.encode(x), sae.encode(x))
    assert torch.equal(loaded(x), sae(x))


def test_training_checkpoint_round_trip_and_log_threshold(tmp_path: Path) -> None:
    sae = make_training_sae(seed=5, dtype="float32")
    sae.save_model(tmp_path)
    assert json.loads((tmp_path / "cfg.json").read_text())["jumprelu_bandwidth"] == BANDWIDTH
    loaded = SAE.load_from_disk(tmp_path)
    x = torch.randn(7, D_IN)
    assert torch.equal(loaded(x), sae(x))

    state = {name: t.clone() for name, t in sae.state_dict().items()}
    state["log_threshold"] = state.pop("threshold").log()
    fresh = make_training_sae(seed=6, dtype="float32")
    fresh.process_state_dict_for_loading(state)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.threshold.detach(), sae.threshold.detach(), rtol=1e-6, atol=0)


def test_fold_W_dec_norm_keeps_training_outputs() -> None:
    sae = make_training_sae(seed=7)
    x = torch.randn(9, D_IN, dtype=torch.float64)
    before = sae(x)
    norms = sae.W_dec.norm(dim=1).detach()
    threshold = sae.threshold.detach().clone()
    sae.fold_W_dec_norm()
    assert sae.threshold.dtype == torch.float32
    torch.testing.assert_close(sae.threshold.detach(), threshold * norms.float())
    torch.testing.assert_close(sae(x), before)
