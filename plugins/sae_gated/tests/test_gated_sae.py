"""Inference GatedSAE: outputs against an independent float64 implementation, files, folding, configs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_sae_gated.gated_sae import GatedSAE, GatedSAEConfig
from safetensors.torch import load_file
from torch.overrides import TorchFunctionMode

from saecore import SAE, ConfigError, SAEConfig

D_IN, D_SAE = 12, 24
MODES = ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"]
GATED_TENSORS = {"W_enc", "b_gate", "b_mag", "r_mag", "W_dec", "b_dec"}


def make_sae(seed: int = 0, **cfg: Any) -> GatedSAE:
    """A GatedSAE with every parameter random (zero biases would hide sign and offset mistakes)."""
    sae = GatedSAE(GatedSAEConfig(d_in=D_IN, d_sae=D_SAE, **cfg))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            scale = 0.3 if name == "r_mag" else 0.5
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
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


def reference_gated(
    p: dict[str, torch.Tensor], x: torch.Tensor, apply_b_dec: bool = True, mode: str = "none"
) -> dict[str, torch.Tensor]:
    """The gated SAE written from the paper's formulas, in float64, magnitude path un-factored."""
    x = x.double()
    x_norm, denormalize = reference_normalize(x, mode)
    x_c = x_norm - p["b_dec"] if apply_b_dec else x_norm
    gate = x_c @ p["W_enc"] + p["b_gate"]
    magnitude = x_c @ (p["W_enc"] * torch.exp(p["r_mag"])) + p["b_mag"]
    feats = torch.where(gate > 0, torch.clamp(magnitude, min=0), torch.zeros_like(magnitude))
    recon = denormalize(feats @ p["W_dec"] + p["b_dec"])
    return {"gate": gate, "magnitude": magnitude, "feats": feats, "recon": recon}


class MatmulCounter(TorchFunctionMode):
    """Counts matrix products, to hold the one-encoder-matmul-per-forward promise."""

    PRODUCTS = (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.bmm, torch.einsum)

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in self.PRODUCTS:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_encode_decode_forward_match_reference(mode: str, apply_b_dec: bool) -> None:
    sae = make_sae(normalize_activations=mode, apply_b_dec_to_input=apply_b_dec)
    x = torch.randn(7, D_IN) * 3
    expected = reference_gated(params64(sae), x, apply_b_dec, mode)
    feats = sae.encode(x)
    assert feats.dtype == torch.float32
    torch.testing.assert_close(feats.double(), expected["feats"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sae.decode(feats).double(), expected["recon"], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(sae(x).double(), expected["recon"], atol=1e-4, rtol=1e-5)
    assert (expected["feats"] > 0).any() and (expected["feats"] == 0).any()


@pytest.mark.parametrize("mode", ["none", "layer_norm"])
def test_three_dimensional_inputs(mode: str) -> None:
    sae = make_sae(seed=1, normalize_activations=mode)
    x = torch.randn(3, 5, D_IN)
    expected = reference_gated(params64(sae), x, mode=mode)
    out = sae(x)
    assert out.shape == (3, 5, D_IN)
    torch.testing.assert_close(sae.encode(x).double(), expected["feats"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.double(), expected["recon"], atol=1e-4, rtol=1e-5)


def test_hooks_see_magnitude_pre_activation_and_gated_acts() -> None:
    sae = make_sae(seed=2)
    x = torch.randn(6, D_IN)
    expected = reference_gated(params64(sae), x)
    _, cache = sae.run_with_cache(x)
    torch.testing.assert_close(cache["hook_sae_acts_pre"].double(), expected["magnitude"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cache["hook_sae_acts_post"].double(), expected["feats"], atol=1e-5, rtol=1e-5)


def test_encode_multiplies_by_W_enc_once() -> None:
    sae = make_sae()
    x = torch.randn(4, D_IN)
    with MatmulCounter() as counter:
        sae.encode(x)
    assert counter.count == 1


def test_error_term_returns_the_input() -> None:
    sae = make_sae(seed=3)
    sae.use_error_term = True
    x = torch.randn(5, D_IN)
    torch.testing.assert_close(sae(x), x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["none", "constant_norm_rescale"])
def test_fold_W_dec_norm_keeps_outputs(mode: str) -> None:
    sae = make_sae(seed=4, normalize_activations=mode)
    x = torch.randn(9, D_IN)
    feats_before, out_before = sae.encode(x), sae(x)
    norms = sae.W_dec.norm(dim=1).detach()
    b_gate, b_mag, r_mag = (t.detach().clone() for t in (sae.b_gate, sae.b_mag, sae.r_mag))
    sae.fold_W_dec_norm()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE), atol=1e-6, rtol=0)
    torch.testing.assert_close(sae.b_gate.detach(), b_gate * norms)
    torch.testing.assert_close(sae.b_mag.detach(), b_mag * norms)
    torch.testing.assert_close(sae.r_mag.detach(), r_mag)
    torch.testing.assert_close(sae.encode(x), feats_before * norms, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sae(x), out_before, atol=1e-5, rtol=1e-5)


def test_save_model_load_from_disk_round_trip(tmp_path: Path) -> None:
    sae = make_sae(seed=5, apply_b_dec_to_input=False, normalize_activations="layer_norm")
    sae.save_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == "gated"
    assert set(load_file(tmp_path / "sae_weights.safetensors")) == GATED_TENSORS
    loaded = SAE.load_from_disk(tmp_path)
    assert isinstance(loaded, GatedSAE)
    assert loaded.cfg.apply_b_dec_to_input is False and loaded.cfg.normalize_activations == "layer_norm"
    x = torch.randn(3, 4, D_IN)
    assert torch.equal(loaded.encode(x), sae.encode(x))
    assert torch.equal(loaded(x), sae(x))


def test_load_from_disk_with_fold_W_dec_norm(tmp_path: Path) -> None:
    sae = make_sae(seed=6)
    sae.save_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path, fold_W_dec_norm=True)
    x = torch.randn(5, D_IN)
    torch.testing.assert_close(loaded(x), sae(x), atol=1e-5, rtol=1e-5)


def test_config_has_no_fields_beyond_the_base() -> None:
    assert set(GatedSAEConfig.model_fields) == set(SAEConfig.model_fields)
    assert GatedSAEConfig.architecture() == "gated"
    cfg = SAEConfig.from_dict({"architecture": "gated", "d_in": 4, "d_sae": 8})
    assert type(cfg) is GatedSAEConfig


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="d_sae"):
        GatedSAEConfig(d_in=4, d_sae=0)
    with pytest.raises(ConfigError, match="l1_coefficient"):
        GatedSAEConfig(d_in=4, d_sae=8, l1_coefficient=1.0)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="normalize_activations"):
        GatedSAEConfig.from_dict({"architecture": "gated", "d_in": 4, "d_sae": 8, "normalize_activations": "zscore"})
