"""The shared TopK sparse step with a separate target and an extra prediction term.

The TopK SAE's tests cover target = input. Here the target is another tensor and a term
with its own parameter is added to the prediction (a transcoder's skip path): losses and
gradients must equal the float64 reference's.
"""

from __future__ import annotations

import pytest
import topk_reference as ref
import torch
from saecore_sae_topk.sparse_training_step import topk_sparse_training_step
from topk_helpers import leaf_copies, training_sae

from saecore import TrainStepInput
from saecore.sparse.auxk import AUX_LOSS_NAME, auxk_plan

D_IN, D_SAE, K, BATCH = 8, 24, 3, 10


@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("any_dead", [False, True])
def test_target_and_extra_prediction_match_the_reference(rescale: bool, any_dead: bool) -> None:
    gen = torch.Generator().manual_seed(7)
    x, target = (torch.randn(BATCH, D_IN, generator=gen, dtype=torch.float64) for _ in range(2))
    skip = torch.randn(D_IN, D_IN, generator=gen, dtype=torch.float64).requires_grad_(True)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = any_dead
    p, o = ref.random_params(D_IN, D_SAE, seed=8), ref.RefOptions(k=K, rescale=rescale, aux_coefficient=0.5)
    sae = training_sae(p, o)
    output = topk_sparse_training_step(
        sae, TrainStepInput(sae_in=x, target=target, coefficients={}, dead_neuron_mask=dead, n_training_steps=0),
        k=K, rescale_acts_by_decoder_norm=rescale, apply_b_dec_to_input=True, aux_plan=auxk_plan(dead, D_IN),
        aux_loss_coefficient=0.5, dense_feature_acts=False, extra_prediction=x @ skip,
    )
    assert output.target is target and output.feature_acts.is_sparse
    got = torch.autograd.grad(output.loss, [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, skip])
    leaves = leaf_copies(p)
    skip_leaf = skip.detach().clone().requires_grad_(True)
    expected = ref.losses(x, leaves, o, dead, target=target, extra=x @ skip_leaf)
    torch.testing.assert_close(output.losses["mse_loss"], expected["mse_loss"])
    torch.testing.assert_close(output.losses[AUX_LOSS_NAME], expected["auxiliary_reconstruction_loss"])
    assert (float(output.losses[AUX_LOSS_NAME].detach()) > 0) == any_dead
    wanted = torch.autograd.grad(expected["mse_loss"] + expected["auxiliary_reconstruction_loss"],
                                 [leaves.W_enc, leaves.b_enc, leaves.W_dec, leaves.b_dec, skip_leaf])
    for name, a, b in zip(("W_enc", "b_enc", "W_dec", "b_dec", "skip"), got, wanted):
        torch.testing.assert_close(a, b, msg=name)
