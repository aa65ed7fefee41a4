"""Nested losses, per-level AuxK and their gradients against an independent float64 implementation."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from saecore_sae_matryoshka_batchtopk.config import MatryoshkaBatchTopKTrainingSAEConfig
from saecore_sae_matryoshka_batchtopk.matryoshka_sae import MatryoshkaBatchTopKTrainingSAE

from saecore import TrainStepInput

D_IN, D_SAE, K = 8, 24, 3
WIDTHS = [4, 10, 24]
PARAMETERS = ("W_enc", "b_enc", "W_dec", "b_dec")


def make_sae(**fields: Any) -> tuple[MatryoshkaBatchTopKTrainingSAE, dict[str, torch.Tensor]]:
    cfg = MatryoshkaBatchTopKTrainingSAEConfig(
        d_in=D_IN, d_sae=D_SAE, k=K, dtype="float64", **{"matryoshka_widths": WIDTHS[:-1], **fields}
    )
    sae = MatryoshkaBatchTopKTrainingSAE(cfg)
    generator = torch.Generator().manual_seed(0)
    params = {}
    for name in PARAMETERS:
        param = getattr(sae, name)
        params[name] = torch.randn(param.shape, generator=generator, dtype=torch.float64) * 0.5
        with torch.no_grad():
            param.copy_(params[name])
    return sae, {name: value.requires_grad_(True) for name, value in params.items()}


def reference(
    p: dict[str, torch.Tensor], x: torch.Tensor, dead: torch.Tensor, rescale: bool, per_level_aux: bool, coef: float
) -> dict[str, torch.Tensor]:
    """The loss terms, from the formulas: batch selection by sorting, nested sums written out."""
    norms = p["W_dec"].norm(dim=1)
    h = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    h = h * norms if rescale else h
    acts = torch.relu(h)
    cutoff = acts.flatten().sort(descending=True).values[int(K * x.shape[0]) - 1]
    f = acts * (acts >= cutoff).double()
    c = f / norms if rescale else f

    def prefix(width: int) -> torch.Tensor:
        return p["b_dec"] + sum(c[:, j:j + 1] * p["W_dec"][j] for j in range(width))

    def sq_error(recons: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((recons - target) ** 2).sum(-1).mean()

    def aux_for(lo: int, hi: int, residual: torch.Tensor) -> torch.Tensor | None:
        latents = [j for j in range(lo, hi) if dead[j]]
        if not latents:
            return None
        k_aux = D_IN // 2
        kept = min(k_aux, len(latents))
        rows = []
        for b in range(x.shape[0]):
            ranked = sorted(latents, key=lambda j: float(h[b, j].detach()), reverse=True)[:kept]
            row = sum(h[b, j] / (norms[j] if rescale else 1.0) * p["W_dec"][j] for j in ranked)
            rows.append(row)
        recons = torch.stack(rows)
        return min(len(latents) / k_aux, 1.0) * sq_error(recons, residual.detach())

    x_hat = prefix(D_SAE)
    losses = {"mse_loss": sq_error(x_hat, x)}
    if per_level_aux:
        terms = [aux_for(lo, hi, x - prefix(hi)) for lo, hi in zip([0, *WIDTHS[:-1]], WIDTHS)]
        losses["auxiliary_reconstruction_loss"] = coef * sum(t for t in terms if t is not None)
    else:
        losses["auxiliary_reconstruction_loss"] = coef * aux_for(0, D_SAE, x - x_hat)
    for width in WIDTHS[:-1]:
        losses[f"inner_mse_loss_{width}"] = sq_error(prefix(width), x)
    return losses


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("per_level_aux", [False, True])
def test_losses_and_gradients_match_the_reference(rescale: bool, per_level_aux: bool) -> None:
    sae, p = make_sae(rescale_acts_by_decoder_norm=rescale, use_matryoshka_aux_loss=per_level_aux,
                      aux_loss_coefficient=0.6)
    x = torch.randn(7, D_IN, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[[2, 5, 6, 7, 8, 15, 22]] = True  # dead latents in every level

    output = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=dead,
                                                      n_training_steps=0))
    output.loss.backward()
    expected = reference(p, x, dead, rescale, per_level_aux, 0.6)
    sum(expected.values()).backward()

    assert list(output.losses) == list(expected)
    for name, value in expected.items():
        torch.testing.assert_close(output.losses[name], value.detach(), rtol=1e-11, atol=1e-12, msg=name)
    torch.testing.assert_close(output.loss, sum(expected.values()).detach(), rtol=1e-11, atol=1e-12)
    for name in PARAMETERS:
        torch.testing.assert_close(getattr(sae, name).grad, p[name].grad, rtol=1e-9, atol=1e-11, msg=name)


def test_levels_without_dead_latents_add_no_aux_loss() -> None:
    sae, _ = make_sae(use_matryoshka_aux_loss=True)
    x = torch.randn(5, D_IN, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    no_dead = torch.zeros(D_SAE, dtype=torch.bool)
    output = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=no_dead,
                                                      n_training_steps=0))
    assert float(output.losses["auxiliary_reconstruction_loss"]) == 0.0


def test_nested_reconstructions_end_with_the_full_reconstruction() -> None:
    sae, _ = make_sae()
    x = torch.randn(2, 3, D_IN, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        f = sae.encode(x)
        levels = list(sae.nested_reconstructions(f, include_outer=True))
        assert [w for w, _ in levels] == WIDTHS
        torch.testing.assert_close(levels[-1][1], sae.decode(f), rtol=1e-12, atol=1e-12)
        assert [w for w, _ in sae.nested_reconstructions(f, include_outer=False)] == WIDTHS[:-1]


def test_threshold_is_learned_as_in_batchtopk() -> None:
    sae, _ = make_sae(topk_threshold_lr=0.5)
    x = torch.randn(6, D_IN, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    output = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=None,
                                                      n_training_steps=0))
    smallest = output.feature_acts[output.feature_acts > 0].min().detach()
    assert float(sae.topk_threshold) == pytest.approx(0.5 * float(smallest), rel=1e-12)
