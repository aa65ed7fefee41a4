"""The gated step's fused encoder node: what it keeps for backward, its float32 values, and hooks.

The float64 losses and gradients of the step (fused when no hook watches
``hook_sae_acts_pre``) are checked against the formulas in test_gated_training.py.
"""

from __future__ import annotations

from typing import Any

import torch
from test_gated_training import D_IN, D_SAE, L1, make_training_sae, reference_losses, step_input

BATCH = 32
LATENT_SIZED = BATCH * D_SAE


def latent_sized_tensors_kept_for_backward(sae: Any, x: torch.Tensor) -> int:
    """Distinct ``[batch, d_sae]`` storages that autograd saves during one training forward pass."""
    storages: set[int] = set()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.numel() == LATENT_SIZED:
            storages.add(tensor.untyped_storage().data_ptr())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        sae.training_forward_pass(step_input(x)).loss.backward()
    return len(storages)


def test_the_unhooked_step_keeps_two_latent_sized_tensors_and_the_hooked_one_more() -> None:
    x = torch.randn(BATCH, D_IN, dtype=torch.float64)
    assert latent_sized_tensors_kept_for_backward(make_training_sae(), x) == 2

    hooked = make_training_sae()
    hooked.hook_sae_acts_pre.add_hook(lambda acts, hook: None)
    assert latent_sized_tensors_kept_for_backward(hooked, x) >= 5


def test_float32_step_matches_the_float64_formulas() -> None:
    sae = make_training_sae(dtype="float32")
    x = torch.randn(BATCH, D_IN, dtype=torch.float64) * 2
    params = {name: p.detach().double().clone().requires_grad_(True) for name, p in sae.named_parameters()}
    expected = reference_losses(params, x, L1, apply_b_dec=True, mode="none")
    sum(expected.values()).backward()  # type: ignore[union-attr]

    out = sae.training_forward_pass(step_input(x.float()))
    out.loss.backward()

    for name, value in expected.items():
        torch.testing.assert_close(out.losses[name].double(), value.detach(), rtol=1e-5, atol=1e-5)
    for name, param in sae.named_parameters():
        assert param.grad is not None, name
        torch.testing.assert_close(param.grad.double(), params[name].grad, rtol=1e-4, atol=1e-4, msg=name)


def test_hidden_pre_is_built_only_when_a_hook_watches_the_magnitude_pre_activation() -> None:
    sae = make_training_sae()
    x = torch.randn(BATCH, D_IN, dtype=torch.float64)
    p = {name: param.detach() for name, param in sae.named_parameters()}
    expected = (x - p["b_dec"]) @ (p["W_enc"] * torch.exp(p["r_mag"])) + p["b_mag"]
    assert sae.training_forward_pass(step_input(x)).hidden_pre is None

    seen: list[torch.Tensor] = []
    sae.hook_sae_acts_pre.add_hook(lambda acts, hook: seen.append(acts.detach()))
    out = sae.training_forward_pass(step_input(x))

    assert out.hidden_pre is not None
    torch.testing.assert_close(out.hidden_pre, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(seen[0], expected, rtol=1e-10, atol=1e-12)


def test_a_hook_that_replaces_the_magnitude_pre_activation_changes_the_features() -> None:
    sae = make_training_sae()
    seen_post: list[torch.Tensor] = []
    sae.hook_sae_acts_pre.add_hook(lambda acts, hook: acts * 2)
    sae.hook_sae_acts_post.add_hook(lambda acts, hook: seen_post.append(acts.detach()))
    x = torch.randn(BATCH, D_IN, dtype=torch.float64)
    p = {name: param.detach() for name, param in sae.named_parameters()}
    x_c = x - p["b_dec"]
    gate = x_c @ p["W_enc"] + p["b_gate"]
    doubled = 2 * (x_c @ (p["W_enc"] * torch.exp(p["r_mag"])) + p["b_mag"])
    expected = (gate > 0).double() * doubled.clamp(min=0)

    out = sae.training_forward_pass(step_input(x))

    torch.testing.assert_close(out.feature_acts, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(seen_post[0], expected, rtol=1e-10, atol=1e-12)


def test_an_observing_hook_on_the_features_sees_them_on_the_fused_path() -> None:
    sae = make_training_sae()
    seen: list[torch.Tensor] = []
    sae.hook_sae_acts_post.add_hook(lambda acts, hook: seen.append(acts.detach()))
    x = torch.randn(BATCH, D_IN, dtype=torch.float64)

    out = sae.training_forward_pass(step_input(x))

    assert len(seen) == 1
    torch.testing.assert_close(seen[0], out.feature_acts.detach(), rtol=0, atol=0)
    assert latent_sized_tensors_kept_for_backward(sae, x) == 2


def test_a_pre_hook_on_the_magnitude_pre_activation_is_honoured_too() -> None:
    sae = make_training_sae()
    sae.hook_sae_acts_pre.register_forward_pre_hook(lambda module, args: (args[0] * 2,))
    x = torch.randn(BATCH, D_IN, dtype=torch.float64)
    p = {name: param.detach() for name, param in sae.named_parameters()}
    x_c = x - p["b_dec"]
    gate = x_c @ p["W_enc"] + p["b_gate"]
    doubled = 2 * (x_c @ (p["W_enc"] * torch.exp(p["r_mag"])) + p["b_mag"])

    out = sae.training_forward_pass(step_input(x))

    torch.testing.assert_close(out.feature_acts, (gate > 0).double() * doubled.clamp(min=0), rtol=1e-10, atol=1e-12)
