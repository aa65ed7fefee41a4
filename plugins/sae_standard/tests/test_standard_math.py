"""Standard SAE formulas checked against an independent float64 implementation."""

from __future__ import annotations

import pytest
import torch

from saecore import SAE, ConfigError, TrainingSAE
from saecore.testing.architecture_conformance import randomize_parameters
from saecore.training_sae import TrainStepInput

D_IN, D_SAE = 12, 40


def reference_forward(params: dict[str, torch.Tensor], x: torch.Tensor, apply_b_dec: bool, norm: str):
    x = x.double()
    state = None
    if norm == "constant_norm_rescale":
        coeff = D_IN**0.5 / x.norm(dim=-1, keepdim=True)
        x_in, state = x * coeff, coeff
    elif norm == "layer_norm":
        mu = x.mean(-1, keepdim=True)
        std = (x - mu).std(-1, keepdim=True)
        x_in, state = (x - mu) / (std + 1e-5), (mu, std)
    else:
        x_in = x
    if apply_b_dec:
        x_in = x_in - params["b_dec"]
    acts = torch.relu(x_in @ params["W_enc"] + params["b_enc"])
    out = acts @ params["W_dec"] + params["b_dec"]
    if norm == "constant_norm_rescale":
        out = out / state
    elif norm == "layer_norm":
        out = out * state[1] + state[0]
    return acts, out


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("norm", ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"])
def test_inference_matches_float64_reference(apply_b_dec: bool, norm: str) -> None:
    sae = SAE.from_dict({"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE,
                         "apply_b_dec_to_input": apply_b_dec, "normalize_activations": norm})
    randomize_parameters(sae, seed=4)
    params = {k: v.detach().double() for k, v in sae.state_dict().items()}
    x = torch.randn(3, 5, D_IN, generator=torch.Generator().manual_seed(0))
    acts, out = reference_forward(params, x, apply_b_dec, norm)
    torch.testing.assert_close(sae.encode(x).double(), acts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae(x).double(), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lp_norm", [1.0, 2.0])
def test_training_loss_and_gradients_match_float64_reference(lp_norm: float) -> None:
    cfg = {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "l1_coefficient": 0.7, "lp_norm": lp_norm}
    sae = TrainingSAE.from_dict(cfg).to(torch.float64)
    randomize_parameters(sae, seed=5)
    x = torch.randn(32, D_IN, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = sae.training_forward_pass(TrainStepInput(x, {"l1": 0.7}, None, 0))
    out.loss.backward()

    ref = {k: v.detach().clone().requires_grad_(True) for k, v in sae.named_parameters()}
    acts = torch.relu((x - ref["b_dec"]) @ ref["W_enc"] + ref["b_enc"])
    recons = acts @ ref["W_dec"] + ref["b_dec"]
    mse = ((recons - x) ** 2).sum(-1).mean()
    weighted = acts * ref["W_dec"].norm(dim=1)
    l1 = 0.7 * (weighted.abs() ** lp_norm).sum(-1).pow(1 / lp_norm).mean()
    (mse + l1).backward()

    torch.testing.assert_close(out.losses["mse_loss"], mse, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.losses["l1_loss"], l1, rtol=1e-10, atol=1e-12)
    for name, param in sae.named_parameters():
        torch.testing.assert_close(param.grad, ref[name].grad, rtol=1e-8, atol=1e-10, msg=name)


def test_negative_l1_coefficient_names_the_field() -> None:
    with pytest.raises(ConfigError, match="l1_coefficient"):
        TrainingSAE.from_dict({"architecture": "standard", "d_in": 4, "d_sae": 8, "l1_coefficient": -1})


@pytest.mark.parametrize("legacy", ["expansion_factor", "hook_layer", "use_ghost_grads", "b_dec_init_method",
                                    "normalize_sae_decoder", "noise_scale", "activation_fn", "mse_loss_normalization"])
def test_legacy_options_removed_in_v6_are_rejected(legacy: str) -> None:
    from pydantic import ValidationError

    from saecore import StandardTrainingSAEConfig

    with pytest.raises(ValidationError, match=legacy):
        StandardTrainingSAEConfig.model_validate({"d_in": 4, "d_sae": 8, legacy: 1})
