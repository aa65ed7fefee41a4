"""Inference JumpReLUSAE: outputs against an independent float64 implementation, files, folding, configs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_sae_jumprelu.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig, JumpReLUTrainingSAEConfig
from safetensors.torch import load_file, save_file

from saecore import SAE, ConfigError, SAEConfig

D_IN, D_SAE = 12, 24
MODES = ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"]
JUMPRELU_TENSORS = {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}


def make_sae(seed: int = 0, **cfg: Any) -> JumpReLUSAE:
    """Random weights and thresholds in [-0.2, 0.8): some negative, to pin the ReLU in ``ReLU(h)·1[h > θ]``."""
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, **cfg))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            if name == "threshold":
                param.copy_(torch.rand(param.shape, generator=generator) - 0.2)
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return sae


def params64(sae: SAE[Any]) -> dict[str, torch.Tensor]:
    return {name: p.detach().double() for name, p in sae.named_parameters()}


def reference_normalize(x: torch.Tensor, mode: str) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    if mode == "constant_norm_rescale":
        scale = (x.shape[-1] ** 0.5) / x.pow(2).sum(-1, keepdim=True).sqrt()
        return x * scale, lambda y: y / scale
    if mode == "layer_norm":
        mu = x.mean(-1, keepdim=True)
        sd = ((x - mu).pow(2).sum(-1, keepdim=True) / (x.shape[-1] - 1)).sqrt()
        return (x - mu) / (sd + 1e-5), lambda y: y * sd + mu
    return x, lambda y: y


def reference_jumprelu(
    p: dict[str, torch.Tensor], x: torch.Tensor, apply_b_dec: bool = True, mode: str = "none"
) -> dict[str, torch.Tensor]:
    x = x.double()
    x_norm, denormalize = reference_normalize(x, mode)
    x_c = x_norm - p["b_dec"] if apply_b_dec else x_norm
    hidden_pre = x_c @ p["W_enc"] + p["b_enc"]
    keep = (hidden_pre > 0) & (hidden_pre > p["threshold"])
    feats = torch.where(keep, hidden_pre, torch.zeros_like(hidden_pre))
    return {"hidden_pre": hidden_pre, "feats": feats, "recon": denormalize(feats @ p["W_dec"] + p["b_dec"])}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_encode_decode_forward_match_reference(mode: str, apply_b_dec: bool) -> None:
    sae = make_sae(normalize_activations=mode, apply_b_dec_to_input=apply_b_dec)
    x = torch.randn(7, D_IN) * 3
    expected = reference_jumprelu(params64(sae), x, apply_b_dec, mode)
    feats = sae.encode(x)
    torch.testing.assert_close(feats.double(), expected["feats"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sae.decode(feats).double(), expected["recon"], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(sae(x).double(), expected["recon"], atol=1e-4, rtol=1e-5)
    assert (expected["feats"] > 0).any() and (expected["feats"] == 0).any()


@pytest.mark.parametrize("mode", ["none", "constant_norm_rescale"])
def test_three_dimensional_inputs(mode: str) -> None:
    sae = make_sae(seed=1, normalize_activations=mode)
    x = torch.randn(3, 5, D_IN)
    expected = reference_jumprelu(params64(sae), x, mode=mode)
    out = sae(x)
    assert out.shape == (3, 5, D_IN)
    torch.testing.assert_close(sae.encode(x).double(), expected["feats"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.double(), expected["recon"], atol=1e-4, rtol=1e-5)


def test_negative_threshold_still_drops_negative_pre_activations() -> None:
    sae = make_sae(seed=2)
    with torch.no_grad():
        sae.threshold.fill_(-10.0)
    x = torch.randn(6, D_IN)
    expected = reference_jumprelu(params64(sae), x)
    assert (expected["hidden_pre"] < 0).any()
    torch.testing.assert_close(sae.encode(x).double(), expected["hidden_pre"].clamp(min=0), atol=1e-5, rtol=1e-5)


def test_hooks_see_pre_and_post_activations() -> None:
    sae = make_sae(seed=3)
    x = torch.randn(6, D_IN)
    expected = reference_jumprelu(params64(sae), x)
    _, cache = sae.run_with_cache(x)
    torch.testing.assert_close(cache["hook_sae_acts_pre"].double(), expected["hidden_pre"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cache["hook_sae_acts_post"].double(), expected["feats"], atol=1e-5, rtol=1e-5)


def test_fold_W_dec_norm_scales_threshold_and_keeps_outputs() -> None:
    sae = make_sae(seed=4)
    x = torch.randn(9, D_IN)
    feats_before, out_before = sae.encode(x), sae(x)
    norms = sae.W_dec.norm(dim=1).detach()
    threshold = sae.threshold.detach().clone()
    sae.fold_W_dec_norm()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE), atol=1e-6, rtol=0)
    torch.testing.assert_close(sae.threshold.detach(), threshold * norms)
    torch.testing.assert_close(sae.encode(x), feats_before * norms, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sae(x), out_before, atol=1e-5, rtol=1e-5)


def test_save_model_load_from_disk_round_trip(tmp_path: Path) -> None:
    sae = make_sae(seed=5, apply_b_dec_to_input=False, normalize_activations="layer_norm")
    sae.save_model(tmp_path)
    assert json.loads((tmp_path / "cfg.json").read_text())["architecture"] == "jumprelu"
    assert set(load_file(tmp_path / "sae_weights.safetensors")) == JUMPRELU_TENSORS
    loaded = SAE.load_from_disk(tmp_path)
    assert type(loaded) is JumpReLUSAE
    x = torch.randn(3, 4, D_IN)
    assert torch.equal(loaded.encode(x), sae.encode(x))
    assert torch.equal(loaded(x), sae(x))


def test_log_threshold_files_load_with_exp(tmp_path: Path) -> None:
    sae = make_sae(seed=6)
    with torch.no_grad():
        sae.threshold.abs_().add_(0.01)
    sae.save_model(tmp_path)
    weights_path = tmp_path / "sae_weights.safetensors"
    tensors = load_file(weights_path)
    tensors["log_threshold"] = tensors.pop("threshold").double().log().float()
    save_file(tensors, weights_path)

    loaded = SAE.load_from_disk(tmp_path)
    torch.testing.assert_close(loaded.threshold.detach(), sae.threshold.detach(), rtol=1e-6, atol=0)
    x = torch.randn(5, D_IN)
    torch.testing.assert_close(loaded(x), sae(x))


def test_error_term_returns_the_input() -> None:
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE), use_error_term=True)
    x = torch.randn(5, D_IN)
    torch.testing.assert_close(sae(x), x, atol=1e-5, rtol=1e-5)


def test_inference_config_has_no_extra_fields() -> None:
    assert set(JumpReLUSAEConfig.model_fields) == set(SAEConfig.model_fields)
    cfg = SAEConfig.from_dict({"architecture": "jumprelu", "d_in": 4, "d_sae": 8})
    assert type(cfg) is JumpReLUSAEConfig


def test_training_config_defaults() -> None:
    cfg = JumpReLUTrainingSAEConfig(d_in=4, d_sae=8)
    assert cfg.jumprelu_init_threshold == 0.01
    assert cfg.jumprelu_bandwidth == 0.05
    assert cfg.jumprelu_sparsity_loss_mode == "step"
    assert (cfg.l0_coefficient, cfg.l0_warm_up_steps) == (1.0, 0)
    assert cfg.pre_act_loss_coefficient is None
    assert cfg.jumprelu_tanh_scale == 4.0
    assert cfg.jumprelu_ste_to_input is False
    assert cfg.target_l0 is None


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"jumprelu_bandwidth": 0.0}, "jumprelu_bandwidth"),
        ({"jumprelu_init_threshold": -0.1}, "jumprelu_init_threshold"),
        ({"jumprelu_sparsity_loss_mode": "l1"}, "jumprelu_sparsity_loss_mode"),
        ({"l0_coefficient": -1.0}, "l0_coefficient"),
        ({"l0_warm_up_steps": -1}, "l0_warm_up_steps"),
        ({"pre_act_loss_coefficient": -3e-6}, "pre_act_loss_coefficient"),
        ({"jumprelu_tanh_scale": 0.0}, "jumprelu_tanh_scale"),
        ({"jumprelu_sparsity_loss_mode": "quadratic"}, "target_l0"),
        ({"jumprelu_sparsity_loss_mode": "quadratic", "target_l0": 0.0}, "target_l0"),
        ({"jumprelu_sparsity_loss_mode": "quadratic", "target_l0": 9.0}, r"target_l0.*d_sae=8"),
    ],
)
def test_training_config_errors_name_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        JumpReLUTrainingSAEConfig(d_in=4, d_sae=8, **fields)
    with pytest.raises(ConfigError, match=named):
        JumpReLUTrainingSAEConfig.from_dict({"architecture": "jumprelu", "d_in": 4, "d_sae": 8, **fields})


def test_unknown_training_fields_are_rejected() -> None:
    with pytest.raises(ConfigError, match="log_threshold_init"):
        JumpReLUTrainingSAEConfig(d_in=4, d_sae=8, log_threshold_init=0.0)  # type: ignore[call-arg]


def test_target_l0_is_only_checked_for_the_quadratic_mode() -> None:
    assert JumpReLUTrainingSAEConfig(d_in=4, d_sae=8, target_l0=100.0).target_l0 == 100.0
    quadratic = JumpReLUTrainingSAEConfig(d_in=4, d_sae=8, jumprelu_sparsity_loss_mode="quadratic", target_l0=8)
    assert quadratic.target_l0 == 8
    cfg = JumpReLUTrainingSAEConfig(d_in=4, d_sae=8)
    with pytest.raises(ConfigError, match="target_l0"):
        cfg.jumprelu_sparsity_loss_mode = "quadratic"
