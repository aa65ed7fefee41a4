"""GatedTrainingSAE: losses and gradients against float64 autograd on the formulas, saving, configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_sae_gated.gated_sae import GatedSAE, GatedTrainingSAE, GatedTrainingSAEConfig
from safetensors.torch import load_file
from torch.overrides import TorchFunctionMode

from saecore import SAE, ConfigError, TrainCoefficientConfig, TrainStepInput
from saecore.testing import reference_normalization

D_IN, D_SAE = 10, 20
L1 = 0.7
GATED_TENSORS = {"W_enc", "b_gate", "b_mag", "r_mag", "W_dec", "b_dec"}


def make_training_sae(seed: int = 0, dtype: str = "float64", **cfg: Any) -> GatedTrainingSAE:
    sae = GatedTrainingSAE(GatedTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, dtype=dtype, **cfg))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            scale = 0.3 if name == "r_mag" else 0.5
            param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float64) * scale)
    return sae


def step_input(x: torch.Tensor, l1: float = L1) -> TrainStepInput:
    return TrainStepInput(sae_in=x, coefficients={"l1": l1}, dead_neuron_mask=None, n_training_steps=0)


def reference_losses(
    p: dict[str, torch.Tensor], x: torch.Tensor, l1: float, apply_b_dec: bool, mode: str
) -> dict[str, torch.Tensor]:
    """The gated training objective in plain float64 ops (gate un-shared, norms spelled out)."""
    x_norm, denormalize = reference_normalization(x, mode)
    x_c = x_norm - p["b_dec"] if apply_b_dec else x_norm
    gate = x_c @ p["W_enc"] + p["b_gate"]
    magnitude = x_c @ (p["W_enc"] * torch.exp(p["r_mag"])) + p["b_mag"]
    feats = (gate > 0).double() * torch.clamp(magnitude, min=0)
    recon = denormalize(feats @ p["W_dec"] + p["b_dec"])
    dec_norms = p["W_dec"].pow(2).sum(dim=1).sqrt()
    gate_acts = torch.clamp(gate, min=0)
    via_gate = gate_acts @ p["W_dec"] + p["b_dec"]
    return {
        "mse_loss": (recon - x).pow(2).sum(-1).mean(),
        "l1_loss": l1 * (gate_acts * dec_norms).sum(-1).mean(),
        "auxiliary_reconstruction_loss": (via_gate - x_norm).pow(2).sum(-1).mean(),
    }


class MatmulCounter(TorchFunctionMode):
    PRODUCTS = (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.bmm, torch.einsum)

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in self.PRODUCTS:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    ("apply_b_dec", "mode"),
    [(True, "none"), (False, "none"), (True, "constant_norm_rescale"), (False, "layer_norm")],
)
def test_losses_and_gradients_match_reference(apply_b_dec: bool, mode: str) -> None:
    sae = make_training_sae(apply_b_dec_to_input=apply_b_dec, normalize_activations=mode)
    x = torch.randn(16, D_IN, dtype=torch.float64) * 2
    params = {name: p.detach().clone().requires_grad_(True) for name, p in sae.named_parameters()}
    expected = reference_losses(params, x, L1, apply_b_dec, mode)
    sum(expected.values()).backward()  # type: ignore[union-attr]

    out = sae.training_forward_pass(step_input(x))
    out.loss.backward()

    assert set(out.losses) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(out.losses[name], value.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.loss, sum(v.detach() for v in expected.values()), rtol=1e-10, atol=1e-12)
    for name, param in sae.named_parameters():
        assert param.grad is not None, name
        torch.testing.assert_close(param.grad, params[name].grad, rtol=1e-9, atol=1e-11, msg=name)
    assert params["b_gate"].grad.abs().sum() > 0  # the gate is trained, through the ReLU(π) losses


def test_training_step_costs_one_encoder_and_two_decoder_matmuls() -> None:
    sae = make_training_sae(dtype="float32")
    with MatmulCounter() as counter:
        sae.training_forward_pass(step_input(torch.randn(8, D_IN)))
    assert counter.count == 3


def test_step_output_fields() -> None:
    sae = make_training_sae(seed=1)
    x = torch.randn(6, D_IN, dtype=torch.float64)
    out = sae.training_forward_pass(step_input(x))
    feats, magnitude_pre = sae.encode_with_hidden_pre(x)
    torch.testing.assert_close(out.feature_acts, feats)
    assert out.hidden_pre is None  # not built unless a hook watches it (test_gated_fused_encoder.py)
    torch.testing.assert_close(out.sae_out, sae.decode(feats))
    assert out.sae_in is x
    sae.hook_sae_acts_pre.add_hook(lambda acts, hook: None)
    torch.testing.assert_close(sae.training_forward_pass(step_input(x)).hidden_pre, magnitude_pre)


@pytest.mark.parametrize("mode", ["none", "constant_norm_rescale"])
def test_calculate_aux_loss_alone_matches_the_step_and_is_silent(mode: str) -> None:
    sae = make_training_sae(seed=2, normalize_activations=mode)
    x, other = torch.randn(8, D_IN, dtype=torch.float64), torch.randn(8, D_IN, dtype=torch.float64)
    calls: list[str] = []
    sae.hook_sae_input.add_hook(lambda t, hook: calls.append(hook.name))
    out = sae.training_forward_pass(step_input(x))
    assert calls == ["hook_sae_input"]

    aux = sae.calculate_aux_loss(step_input(x), out.feature_acts, out.hidden_pre, out.sae_out)
    assert calls == ["hook_sae_input"]
    for name in ("l1_loss", "auxiliary_reconstruction_loss"):
        torch.testing.assert_close(aux[name], out.losses[name])

    # The normalisation statistics of an encode survive an aux-loss call on another batch.
    feats = sae.encode(x)
    sae.calculate_aux_loss(step_input(other), feats, feats, feats)
    torch.testing.assert_close(sae.decode(feats), sae(x))


def test_coefficients_follow_the_config() -> None:
    sae = GatedTrainingSAE(GatedTrainingSAEConfig(d_in=4, d_sae=8, l1_coefficient=3.0, l1_warm_up_steps=50))
    assert sae.get_coefficients() == {"l1": TrainCoefficientConfig(3.0, 50)}
    x = torch.randn(5, 4)
    zero = sae.training_forward_pass(step_input(x, l1=0.0)).losses["l1_loss"]
    assert zero.item() == 0.0


def test_save_inference_model_loads_as_gated_sae(tmp_path: Path) -> None:
    sae = make_training_sae(seed=3, dtype="float32", l1_coefficient=2.5)
    sae.save_inference_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == "gated"
    assert "l1_coefficient" not in cfg and "decoder_init_norm" not in cfg
    assert cfg["metadata"]["training_architecture"] == "gated"
    assert cfg["metadata"]["training_architecture_details"]["l1_coefficient"] == 2.5
    assert set(load_file(tmp_path / "sae_weights.safetensors")) == GATED_TENSORS

    loaded = SAE.load_from_disk(tmp_path)
    assert type(loaded) is GatedSAE
    x = torch.randn(2, 3, D_IN)
    assert torch.equal(loaded.encode(x), sae.encode(x))
    assert torch.equal(loaded(x), sae(x))


def test_training_checkpoint_round_trip(tmp_path: Path) -> None:
    sae = make_training_sae(seed=4, dtype="float32")
    sae.save_model(tmp_path)
    assert json.loads((tmp_path / "cfg.json").read_text())["l1_coefficient"] == 1.0
    loaded = SAE.load_from_disk(tmp_path)
    x = torch.randn(7, D_IN)
    assert torch.equal(loaded(x), sae(x))


def test_fold_W_dec_norm_keeps_training_outputs() -> None:
    sae = make_training_sae(seed=5)
    x = torch.randn(9, D_IN, dtype=torch.float64)
    before = sae(x)
    sae.fold_W_dec_norm()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE, dtype=torch.float64))
    torch.testing.assert_close(sae(x), before)


def test_training_config_defaults_and_errors() -> None:
    cfg = GatedTrainingSAEConfig(d_in=4, d_sae=8)
    assert (cfg.l1_coefficient, cfg.l1_warm_up_steps, cfg.decoder_init_norm) == (1.0, 0, 0.1)
    with pytest.raises(ConfigError, match="l1_coefficient"):
        GatedTrainingSAEConfig(d_in=4, d_sae=8, l1_coefficient=-1.0)
    with pytest.raises(ConfigError, match="l1_warm_up_steps"):
        GatedTrainingSAEConfig(d_in=4, d_sae=8, l1_warm_up_steps=-5)
    with pytest.raises(ConfigError, match="lp_norm"):
        GatedTrainingSAEConfig(d_in=4, d_sae=8, lp_norm=2.0)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="l1_coefficient"):
        GatedTrainingSAEConfig.from_dict({"architecture": "gated", "d_in": 4, "d_sae": 8, "l1_coefficient": "lots"})
