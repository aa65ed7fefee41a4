"""Matching pursuit's encode, decode, loss and gradients against a float64 implementation written here.

The reference runs the pursuit one input row at a time with Python control flow, so it
shares nothing with the plugin's batched loop.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from saecore import SAE, TrainingSAE, TrainStepInput

D_IN, D_SAE, BATCH = 6, 20, 9


def random_params(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    w_dec = torch.randn(D_SAE, D_IN, generator=generator, dtype=torch.float64)
    return {"W_dec": w_dec / w_dec.norm(dim=-1, keepdim=True), "b_dec": torch.randn(D_IN, generator=generator,
                                                                                     dtype=torch.float64) * 0.3}


def build(params: dict[str, torch.Tensor], training: bool, **fields: Any) -> SAE[Any]:
    cfg = {"architecture": "matching_pursuit", "d_in": D_IN, "d_sae": D_SAE, "dtype": "float64", **fields}
    sae = TrainingSAE.from_dict(cfg) if training else SAE.from_dict(cfg)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            param.copy_(params[name])
    return sae


def reference_row(
    W_dec: torch.Tensor, z: torch.Tensor, threshold: float, max_iterations: int | None, stop_on_duplicate: bool
) -> torch.Tensor:
    acts = [torch.zeros((), dtype=torch.float64) for _ in range(D_SAE)]
    support: set[int] = set()
    residual = z
    for _ in range(D_IN if max_iterations is None else max_iterations):
        dots = W_dec.detach() @ residual.detach()
        latent = int(dots.argmax())
        amount = torch.clamp(residual @ W_dec[latent], min=0)
        acts[latent] = acts[latent] + amount
        residual = residual - amount * W_dec[latent]
        fired = float(amount.detach()) > 0
        grew = fired and latent not in support
        if fired:
            support.add(latent)
        if stop_on_duplicate and not grew:
            break
        if threshold > 0 and float(residual.detach().norm()) < threshold:
            break
    return torch.stack(acts)


def reference(
    p: dict[str, torch.Tensor], x: torch.Tensor, threshold: float = 1e-2, max_iterations: int | None = None,
    stop_on_duplicate: bool = True, b_dec_in: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    z = x - p["b_dec"] if b_dec_in else x
    acts = torch.stack([reference_row(p["W_dec"], row, threshold, max_iterations, stop_on_duplicate) for row in z])
    recon = acts @ p["W_dec"] + (p["b_dec"] if b_dec_in else 0)
    return acts, recon


def inputs(seed: int = 5) -> torch.Tensor:
    return torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


OPTIONS = {
    "defaults": {},
    "threshold-1": {"residual_threshold": 1.0},
    "threshold-only": {"residual_threshold": 0.5, "stop_on_duplicate_support": False},
    "fixed-iterations": {"residual_threshold": 0.0, "stop_on_duplicate_support": False, "max_iterations": 3},
    "max-iterations-2": {"max_iterations": 2},
    "no-b-dec-in": {"apply_b_dec_to_input": False},
}


def _reference_options(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "threshold": options.get("residual_threshold", 1e-2),
        "max_iterations": options.get("max_iterations"),
        "stop_on_duplicate": options.get("stop_on_duplicate_support", True),
        "b_dec_in": options.get("apply_b_dec_to_input", True),
    }


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_inference_matches_the_formulas(options: dict[str, Any]) -> None:
    p = random_params(0)
    sae = build(p, training=False, **options)
    x = inputs()
    acts, recon = reference(p, x, **_reference_options(options))
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), acts, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(sae(x), recon, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(sae.encode(x.reshape(3, 3, D_IN)), acts.reshape(3, 3, D_SAE), rtol=1e-10,
                                   atol=1e-12)
    l0 = (acts != 0).sum(-1)
    assert int(l0.min()) >= 1 and int(l0.max()) < D_SAE


@pytest.mark.parametrize("options", [OPTIONS["defaults"], OPTIONS["fixed-iterations"]], ids=["defaults", "fixed"])
def test_training_loss_and_gradients_match_the_formulas(options: dict[str, Any]) -> None:
    p = random_params(1)
    sae = build(p, training=True, **options)
    x = inputs(6)
    output = sae.training_forward_pass(TrainStepInput(x, {}, None, n_training_steps=0))
    output.loss.backward()

    leaves = {name: value.clone().requires_grad_(True) for name, value in p.items()}
    _, recon = reference(leaves, x, **_reference_options(options))
    mse = ((recon - x) ** 2).sum(-1).mean()
    mse.backward()

    assert set(output.losses) == {"mse_loss"}
    torch.testing.assert_close(output.loss, mse.detach(), rtol=1e-10, atol=1e-12)
    for name, param in sae.named_parameters():
        torch.testing.assert_close(param.grad, leaves[name].grad, rtol=1e-9, atol=1e-12, msg=name)


def test_logging_steps_report_how_far_the_pursuit_went() -> None:
    p = random_params(2)
    sae = build(p, training=True, residual_threshold=1.0)
    x = inputs(7)
    output = sae.training_forward_pass(TrainStepInput(x, {}, None, n_training_steps=0, is_logging_step=True))
    acts, recon = reference(p, x, threshold=1.0)
    l0 = (acts != 0).sum(-1).double()
    residual_norm = (x - recon).norm(dim=-1)
    assert float(output.metrics["max_l0"]) == float(l0.max())
    assert float(output.metrics["min_l0"]) == float(l0.min())
    torch.testing.assert_close(output.metrics["residual_norm"], residual_norm.mean())
    converged = (residual_norm < 1.0).double().mean()
    torch.testing.assert_close(output.metrics["residual_threshold_converged_portion"], converged)
    assert not sae.training_forward_pass(TrainStepInput(x, {}, None, n_training_steps=0)).metrics


def test_folding_an_input_scale_gives_raw_inputs_the_scaled_result() -> None:
    """Trained on ``s·x``: after folding, raw ``x`` gives activations ``f(s·x)/s`` and reconstruction ``x̂(s·x)/s``."""
    scale = 3.0
    sae = build(random_params(3), training=False, residual_threshold=0.6,
                normalize_activations="expected_average_only_in")
    x = inputs(8)
    with torch.no_grad():
        acts_scaled, out_scaled = sae.encode(x * scale), sae(x * scale)
        sae.fold_activation_norm_scaling_factor(scale)
        torch.testing.assert_close(sae.encode(x), acts_scaled / scale, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(sae(x), out_scaled / scale, rtol=1e-10, atol=1e-12)
    assert sae.cfg.residual_threshold == pytest.approx(0.2)
    assert sae.cfg.normalize_activations == "none"


def test_training_decoder_rows_start_at_unit_norm_whatever_is_asked() -> None:
    with pytest.warns(UserWarning, match="decoder_init_norm=0.1 is not used"):
        sae = TrainingSAE.from_dict({"architecture": "matching_pursuit", "d_in": D_IN, "d_sae": D_SAE,
                                     "decoder_init_norm": 0.1})
    assert sae.cfg.decoder_init_norm == 1.0
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(D_SAE))


def test_only_the_decoder_is_stored() -> None:
    sae = build(random_params(4), training=False)
    assert sorted(sae.state_dict()) == ["W_dec", "b_dec"]
    assert torch.equal(sae.W_enc, sae.W_dec.T)


def test_hook_sae_acts_post_sees_the_codes() -> None:
    p = random_params(5)
    sae = build(p, training=False)
    seen: list[torch.Tensor] = []
    sae.hook_sae_acts_post.add_hook(lambda acts, hook: seen.append(acts.detach().clone()))
    x = inputs(9)
    with torch.no_grad():
        sae.encode(x)
    torch.testing.assert_close(seen[0], reference(p, x)[0], rtol=1e-10, atol=1e-12)
