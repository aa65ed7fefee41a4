"""Selection, threshold, losses and gradients of the batchtopk recipe against a float64 reference."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from batchtopk_reference import auxk, batch_selection, decode, random_parameters, scores
from saecore_sae_batchtopk.batch_topk import batch_topk, updated_threshold
from saecore_sae_batchtopk.batchtopk_sae import BatchTopKTrainingSAE
from saecore_sae_batchtopk.config import BatchTopKTrainingSAEConfig

from saecore import ConfigError, TrainStepInput
from saecore.errors import UnsafeFoldError

D_IN, D_SAE = 8, 24
PARAMETERS = ("W_enc", "b_enc", "W_dec", "b_dec")


def make_sae(seed: int = 0, **fields: Any) -> tuple[BatchTopKTrainingSAE[Any], dict[str, torch.Tensor]]:
    cfg = BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, dtype="float64", **{"k": 3, **fields})
    sae: BatchTopKTrainingSAE[Any] = BatchTopKTrainingSAE(cfg)
    params = random_parameters(D_IN, D_SAE, seed)
    with torch.no_grad():
        for name, value in params.items():
            getattr(sae, name).copy_(value)
    return sae, {name: value.clone().requires_grad_(True) for name, value in params.items()}


def inputs(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, D_IN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def step(x: torch.Tensor, dead: torch.Tensor | None) -> TrainStepInput:
    return TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=dead, n_training_steps=0)


@pytest.mark.parametrize("k", [3, 2.5])
@pytest.mark.parametrize("shape", [(6,), (2, 5)])
def test_batch_topk_keeps_the_k_times_n_largest_activations_of_the_batch(k: float, shape: tuple[int, ...]) -> None:
    weights = torch.randn(D_IN, D_SAE, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    h = inputs(*shape, seed=4) @ weights
    selected = batch_topk(h, k)
    torch.testing.assert_close(selected, batch_selection(h, k), rtol=0, atol=0)
    n_inputs = int(torch.tensor(shape).prod())
    assert int((selected > 0).sum()) == int(k * n_inputs)
    per_input = (selected > 0).sum(-1)
    assert per_input.min() != per_input.max()  # the budget is shared, not fixed per input


def test_batch_topk_keeps_zeros_when_fewer_activations_are_positive_than_the_budget() -> None:
    h = -torch.ones(4, D_SAE, dtype=torch.float64)
    h[0, 0] = 2.0
    selected = batch_topk(h, 3)
    assert torch.count_nonzero(selected) == 1 and selected[0, 0] == 2.0


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_losses_and_gradients_match_the_reference(rescale: bool, apply_b_dec: bool) -> None:
    sae, p = make_sae(rescale_acts_by_decoder_norm=rescale, apply_b_dec_to_input=apply_b_dec, aux_loss_coefficient=0.7)
    x = inputs(10)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[[1, 4, 5, 9, 17, 20]] = True

    output = sae.training_forward_pass(step(x, dead))
    output.loss.backward()

    h = scores(p, x, rescale, apply_b_dec)
    f = batch_selection(h, 3)
    x_hat = decode(p, f, rescale)
    mse = ((x_hat - x) ** 2).sum(-1).mean()
    aux = 0.7 * auxk(p, h, x, x_hat, dead, rescale)
    (mse + aux).backward()

    torch.testing.assert_close(output.feature_acts, f.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(output.losses["mse_loss"], mse.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(output.losses["auxiliary_reconstruction_loss"], aux.detach(), rtol=1e-12, atol=1e-12)
    for name in PARAMETERS:
        grad = getattr(sae, name).grad
        assert grad is not None and p[name].grad is not None
        torch.testing.assert_close(grad, p[name].grad, rtol=1e-10, atol=1e-12, msg=f"gradient of {name}")


def test_aux_loss_scale_grows_with_the_number_of_dead_latents() -> None:
    """``scale = min(n_dead / (d_in // 2), 1)``: one dead latent of d_in//2 = 4 gets a quarter."""
    sae, p = make_sae()
    x = inputs(10)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[7] = True
    aux = sae.training_forward_pass(step(x, dead)).losses["auxiliary_reconstruction_loss"]
    h = scores(p, x, True)
    x_hat = decode(p, batch_selection(h, 3), True)
    torch.testing.assert_close(aux, auxk(p, h, x, x_hat, dead, True).detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dead", [None, torch.zeros(D_SAE, dtype=torch.bool)])
def test_no_dead_latents_means_zero_aux_loss(dead: torch.Tensor | None) -> None:
    sae, _ = make_sae()
    output = sae.training_forward_pass(step(inputs(6), dead))
    assert float(output.losses["auxiliary_reconstruction_loss"]) == 0.0


def test_threshold_follows_the_moving_average_of_the_smallest_kept_activation() -> None:
    sae, p = make_sae(topk_threshold_lr=0.2)
    expected = 0.0
    for seed in range(4):
        x = inputs(12, seed=seed)
        output = sae.training_forward_pass(step(x, None))
        f = batch_selection(scores(p, x, True), 3)
        expected = 0.8 * expected + 0.2 * float(f[f > 0].min().detach())
        assert sae.topk_threshold.dtype == torch.float64
        assert float(sae.topk_threshold) == pytest.approx(expected, rel=1e-12)
        assert output.metrics["topk_threshold"] is sae.topk_threshold


def test_threshold_is_unchanged_when_nothing_fired() -> None:
    theta = torch.tensor(0.25, dtype=torch.float64)
    assert float(updated_threshold(theta, torch.zeros(5, 7), 0.5)) == 0.25
    assert float(updated_threshold(theta, torch.tensor([[0.0, 0.75]]), 0.5)) == 0.5


@pytest.mark.parametrize("rescale", [True, False])
def test_in_eval_mode_encode_and_forward_use_the_learned_threshold(rescale: bool) -> None:
    sae, p = make_sae(rescale_acts_by_decoder_norm=rescale)
    sae.topk_threshold = torch.tensor(0.4, dtype=torch.float64)
    sae.eval()
    x = inputs(3, 4)
    h = scores(p, x, rescale)
    f = torch.relu(h) * (h > 0.4).double()
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), f, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(sae(x), decode(p, f, rescale), rtol=1e-12, atol=1e-12)


def test_threshold_keeps_float64_and_its_value_through_dtype_moves() -> None:
    sae, _ = make_sae()
    sae.topk_threshold = torch.tensor(0.123456789012345, dtype=torch.float64)
    sae.to(torch.bfloat16)
    assert sae.W_enc.dtype == torch.bfloat16
    assert sae.topk_threshold.dtype == torch.float64
    assert float(sae.topk_threshold) == 0.123456789012345


@pytest.mark.parametrize("rescale", [True, False])
def test_folding_the_activation_scale_keeps_outputs_on_raw_inputs(rescale: bool) -> None:
    sae, _ = make_sae(rescale_acts_by_decoder_norm=rescale)
    sae.topk_threshold = torch.tensor(0.3, dtype=torch.float64)
    x, s = inputs(9), 2.5
    with torch.no_grad():
        scaled_out = sae(s * x)
        sae.fold_activation_norm_scaling_factor(s)
        torch.testing.assert_close(sae(x), scaled_out / s, rtol=1e-10, atol=1e-12)
    assert float(sae.topk_threshold) == pytest.approx(0.3 / s if rescale else 0.3, rel=1e-15)


def test_fold_W_dec_norm_keeps_outputs_when_rescaling() -> None:
    sae, _ = make_sae()
    sae.topk_threshold = torch.tensor(0.2, dtype=torch.float64)
    x = inputs(7)
    with torch.no_grad():
        before = sae(x)
        sae.fold_W_dec_norm()
        torch.testing.assert_close(sae(x), before, rtol=1e-10, atol=1e-12)


def test_fold_W_dec_norm_is_refused_without_rescaling() -> None:
    sae, _ = make_sae(rescale_acts_by_decoder_norm=False)
    with pytest.raises(UnsafeFoldError, match="rescale_acts_by_decoder_norm=False"):
        sae.fold_W_dec_norm()
    assert issubclass(UnsafeFoldError, ConfigError) and issubclass(UnsafeFoldError, NotImplementedError)


def test_in_training_mode_encode_applies_the_batch_selection_so_mean_l0_is_k_at_init() -> None:
    sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=16, d_sae=128, k=4))
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float((sae.encode(x) > 0).sum(-1).float().mean()) == 4.0
        torch.testing.assert_close(sae.encode(x), batch_topk(sae.ranking_scores(x).relu(), 4))
        assert float((sae.eval().encode(x) > 0).sum(-1).float().mean()) > 4.0  # the threshold, still 0 here
