"""The toolkit's AuxK plan and loss, and what selection-by-ranking SAEs share, against float64 formulas."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from saecore import ConfigError, TrainingSAE
from saecore.errors import UnsafeFoldError
from saecore.sparse import (
    auxk_loss,
    auxk_plan,
    check_fold_keeps_selection,
    fold_decoder_norms_for_saving,
    ranking_scores,
)

from .sparse_helpers import generator, random_standard_sae

D_IN, D_SAE, BATCH = 8, 20, 6


def make_sae() -> TrainingSAE[Any]:
    return random_standard_sae(D_IN, D_SAE, 0, dtype="float64")


def test_the_plan_scales_by_the_dead_fraction_of_half_d_in() -> None:
    assert auxk_plan(None, D_IN) is None
    assert auxk_plan(torch.zeros(D_SAE, dtype=torch.bool), D_IN) is None
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[[2, 5]] = True
    plan = auxk_plan(dead, D_IN)
    assert plan is not None and plan.dead_latents.tolist() == [2, 5] and (plan.k_aux, plan.scale) == (2, 0.5)
    many = auxk_plan(torch.ones(D_SAE, dtype=torch.bool), D_IN)
    assert many is not None and (many.k_aux, many.scale) == (D_IN // 2, 1.0)
    one_input = auxk_plan(torch.ones(D_SAE, dtype=torch.bool), 1)  # d_in // 2 = 0: at least one latent
    assert one_input is not None and (one_input.k_aux, one_input.scale) == (1, 1.0)


@pytest.mark.parametrize("rescale", [True, False])
def test_the_loss_decodes_the_top_dead_scores_raw_and_scaled(rescale: bool) -> None:
    scores = torch.randn(BATCH, D_SAE, generator=generator(1), dtype=torch.float64, requires_grad=True)
    W_dec = torch.randn(D_SAE, D_IN, generator=generator(2), dtype=torch.float64, requires_grad=True)
    residual = torch.randn(BATCH, D_IN, generator=generator(3), dtype=torch.float64)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[[0, 3, 4, 9, 11, 17]] = True
    plan = auxk_plan(dead, D_IN)
    assert plan is not None
    latent_scale = 1 / W_dec.norm(dim=-1) if rescale else None
    loss = auxk_loss(plan, scores, W_dec, residual, latent_scale)

    dead_scores = scores[:, dead]
    kept = dead_scores.topk(plan.k_aux, dim=-1).indices
    a = torch.zeros_like(dead_scores).scatter(1, kept, dead_scores.gather(1, kept))  # raw: negatives kept
    rows = W_dec[dead] / W_dec[dead].norm(dim=-1, keepdim=True) if rescale else W_dec[dead]
    expected = plan.scale * (a @ rows - residual).pow(2).sum(-1).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(loss, (scores, W_dec))
    expected_grads = torch.autograd.grad(expected, (scores, W_dec))
    for ours, theirs in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rescale", [True, False])
def test_ranking_scores_are_the_pre_activations_times_the_decoder_norms_when_rescaling(rescale: bool) -> None:
    sae = make_sae()
    x = torch.randn(BATCH, D_IN, generator=generator(4), dtype=torch.float64)
    h = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    expected = h * sae.W_dec.norm(dim=-1) if rescale else h
    torch.testing.assert_close(ranking_scores(sae, x, rescale), expected)


def test_folding_is_refused_where_it_would_change_the_selection() -> None:
    sae = make_sae()
    check_fold_keeps_selection(sae, rescale_by_decoder_norm=True)
    with pytest.raises(UnsafeFoldError, match="rescale_acts_by_decoder_norm=False"):
        check_fold_keeps_selection(sae, rescale_by_decoder_norm=False)
    assert issubclass(UnsafeFoldError, ConfigError) and issubclass(UnsafeFoldError, NotImplementedError)


def test_the_saved_fold_is_the_live_fold() -> None:
    """Folding the tensors a training SAE saves gives what folding the live SAE gives."""
    sae = make_sae()
    state_dict = {name: tensor.clone() for name, tensor in sae.state_dict().items()}
    fold_decoder_norms_for_saving(state_dict)
    sae.fold_W_dec_norm()
    for name in ("W_enc", "b_enc", "W_dec"):
        assert torch.equal(state_dict[name], getattr(sae, name)), name
