"""AbsTopK's encode, decode, losses and gradients against a float64 implementation written here."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from saecore import SAE, ConfigError, TrainingSAE, TrainStepInput

D_IN, D_SAE, K, BATCH = 8, 32, 3, 10


def random_params(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    row_scale = torch.rand(D_SAE, 1, generator=generator, dtype=torch.float64) + 0.5
    return {
        "W_enc": torch.randn(D_IN, D_SAE, generator=generator, dtype=torch.float64) * 0.5,
        "b_enc": torch.randn(D_SAE, generator=generator, dtype=torch.float64) * 0.2,
        "W_dec": torch.randn(D_SAE, D_IN, generator=generator, dtype=torch.float64) * 0.4 * row_scale,
        "b_dec": torch.randn(D_IN, generator=generator, dtype=torch.float64) * 0.2,
    }


def build(params: dict[str, torch.Tensor], training: bool, **fields: Any) -> SAE[Any]:
    cfg = {"architecture": "abstopk", "d_in": D_IN, "d_sae": D_SAE, "k": K, "dtype": "float64", **fields}
    sae = TrainingSAE.from_dict(cfg) if training else SAE.from_dict(cfg)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            param.copy_(params[name])
    return sae


def reference(
    p: dict[str, torch.Tensor], x: torch.Tensor, rescale: bool, b_dec_in: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scores h', activations, reconstruction), selecting by sorting |h'| row by row."""
    norms = p["W_dec"].norm(dim=-1)
    h = ((x - p["b_dec"]) if b_dec_in else x) @ p["W_enc"] + p["b_enc"]
    scores = h * norms if rescale else h
    acts = torch.zeros_like(scores)
    for row in range(scores.shape[0]):
        keep = scores[row].abs().argsort(descending=True)[:K]
        acts[row, keep] = scores[row, keep]
    decode_scale = acts / norms if rescale else acts
    return scores, acts, decode_scale @ p["W_dec"] + p["b_dec"]


def reference_aux(
    p: dict[str, torch.Tensor], scores: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor, rescale: bool
) -> torch.Tensor:
    n_dead = int(dead.sum())
    k_aux = D_IN // 2
    scale = min(n_dead / k_aux, 1.0)
    k_aux = min(k_aux, n_dead)
    aux_acts = torch.zeros_like(scores)
    for row in range(scores.shape[0]):
        magnitude = torch.where(dead, scores[row].abs(), torch.full_like(scores[row], -1.0))
        keep = magnitude.argsort(descending=True)[:k_aux]
        aux_acts[row, keep] = scores[row, keep]
    if rescale:
        aux_acts = aux_acts / p["W_dec"].norm(dim=-1)
    return scale * ((aux_acts @ p["W_dec"] - residual.detach()) ** 2).sum(-1).mean()


def inputs(seed: int = 5) -> torch.Tensor:
    return torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("b_dec_in", [False, True])
def test_inference_matches_the_formulas(rescale: bool, b_dec_in: bool) -> None:
    p = random_params(0)
    sae = build(p, training=False, rescale_acts_by_decoder_norm=rescale, apply_b_dec_to_input=b_dec_in)
    x = inputs()
    _, acts, recon = reference(p, x, rescale, b_dec_in)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), acts, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(sae(x), recon, rtol=1e-12, atol=1e-12)
    assert bool((acts < 0).any()), "the test inputs must keep some negative activations"
    assert bool(((acts != 0).sum(-1) == K).all())


@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("n_dead", [None, 0, 2, 20])
def test_training_losses_and_gradients_match_the_formulas(rescale: bool, n_dead: int | None) -> None:
    p = random_params(1)
    sae = build(p, training=True, rescale_acts_by_decoder_norm=rescale, aux_loss_coefficient=0.7)
    x = inputs(6)
    dead = None if n_dead is None else torch.arange(D_SAE) % (D_SAE // max(n_dead, 1)) == 0
    if n_dead == 0:
        dead = torch.zeros(D_SAE, dtype=torch.bool)
    output = sae.training_forward_pass(TrainStepInput(x, {}, dead, n_training_steps=0))
    output.loss.backward()

    leaves = {name: value.clone().requires_grad_(True) for name, value in p.items()}
    scores, _, recon = reference(leaves, x, rescale)
    mse = ((recon - x) ** 2).sum(-1).mean()
    aux = torch.zeros((), dtype=torch.float64)
    if dead is not None and int(dead.sum()) > 0:
        aux = 0.7 * reference_aux(leaves, scores, x - recon, dead, rescale)
    (mse + aux).backward()

    torch.testing.assert_close(output.losses["mse_loss"], mse.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(output.losses["auxiliary_reconstruction_loss"], aux.detach(), rtol=1e-10, atol=1e-12)
    for name, param in sae.named_parameters():
        torch.testing.assert_close(param.grad, leaves[name].grad, rtol=1e-9, atol=1e-12, msg=name)


def test_aux_loss_draws_negative_dead_latents() -> None:
    """A dead latent with a large negative score is chosen over positive ones of smaller magnitude."""
    p = random_params(2)
    p["W_enc"].zero_()
    p["b_enc"].zero_()
    p["b_enc"][0] = -5.0
    p["b_enc"][1] = 0.1
    sae = build(p, training=True, rescale_acts_by_decoder_norm=False)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[:2] = True
    x = inputs(7)
    output = sae.training_forward_pass(TrainStepInput(x, {}, dead, n_training_steps=0))
    _, _, recon = reference(p, x, rescale=False)
    aux_acts = torch.zeros(BATCH, D_SAE, dtype=torch.float64)
    aux_acts[:, :2] = p["b_enc"][:2]  # k_aux = min(d_in // 2, 2 dead) = 2, scale = 2 / 4
    expected = 0.5 * ((aux_acts @ p["W_dec"] - (x - recon)) ** 2).sum(-1).mean()
    torch.testing.assert_close(output.losses["auxiliary_reconstruction_loss"], expected, rtol=1e-10, atol=1e-12)


def test_aux_loss_refuses_per_token_normalisation_once_latents_are_dead() -> None:
    sae = build(random_params(3), training=True, normalize_activations="layer_norm")
    x = inputs()
    sae.training_forward_pass(TrainStepInput(x, {}, torch.zeros(D_SAE, dtype=torch.bool), n_training_steps=0))
    with pytest.raises(ConfigError, match="normalize_activations='layer_norm'"):
        sae.training_forward_pass(TrainStepInput(x, {}, torch.ones(D_SAE, dtype=torch.bool), n_training_steps=0))


def test_saving_folds_the_decoder_norms(tmp_path: Any) -> None:
    p = random_params(4)
    sae = build(p, training=True, rescale_acts_by_decoder_norm=True)
    sae.save_inference_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path, dtype="float64")
    assert loaded.cfg.rescale_acts_by_decoder_norm is False
    torch.testing.assert_close(loaded.W_dec.norm(dim=-1), torch.ones(D_SAE, dtype=torch.float64))
    x = inputs(8)
    _, acts, recon = reference(p, x, rescale=True)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), acts, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(loaded(x), recon, rtol=1e-10, atol=1e-12)


def test_k_larger_than_d_sae_names_both() -> None:
    with pytest.raises(ConfigError, match="k = 40 is larger than d_sae = 32"):
        SAE.from_dict({"architecture": "abstopk", "d_in": D_IN, "d_sae": D_SAE, "k": 40})
