"""The BatchTopK and Matryoshka steps on saecore's support route give SAELens 6's losses and gradients.

Both libraries start from the same float64 weights and take one step on the same batch,
with some latents counted dead (so AuxK runs); saecore's step runs over the batch
selection's support (k is well under d_sae / 16), SAELens's densely.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")

from sae_lens.saes.sae import TrainStepInput as SAELensTrainStepInput  # noqa: E402

from saecore import TrainingSAE, TrainStepInput  # noqa: E402

D_IN, D_SAE, BATCH, K = 16, 256, 48, 4
RECIPES = {
    "batchtopk": ("BatchTopK", {}),
    "matryoshka_batchtopk": ("MatryoshkaBatchTopK", {"matryoshka_widths": [32, 96, D_SAE]}),
    "matryoshka_batchtopk per-level AuxK": (
        "MatryoshkaBatchTopK", {"matryoshka_widths": [32, 96, D_SAE], "use_matryoshka_aux_loss": True}
    ),
}


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("recipe_id", sorted(RECIPES))
def test_the_support_step_gives_saelens_losses_and_gradients(recipe_id: str, rescale: bool) -> None:
    prefix, fields = RECIPES[recipe_id]
    shared: dict[str, Any] = {"d_in": D_IN, "d_sae": D_SAE, "k": K, "dtype": "float64",
                              "rescale_acts_by_decoder_norm": rescale, "aux_loss_coefficient": 0.5, **fields}
    theirs = getattr(sae_lens, f"{prefix}TrainingSAE")(getattr(sae_lens, f"{prefix}TrainingSAEConfig")(**shared))
    ours = TrainingSAE.from_dict({"architecture": recipe_id.split()[0], **shared})
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in ours.named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float64) * 0.3)
            getattr(theirs, name).copy_(param)
    x = torch.randn(BATCH, D_IN, generator=generator, dtype=torch.float64)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[torch.randperm(D_SAE, generator=generator)[:40]] = True

    our_output = ours.training_forward_pass(TrainStepInput(x, {}, dead, n_training_steps=0))
    their_input = SAELensTrainStepInput(
        sae_in=x, coefficients={}, dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False
    )
    their_output = theirs.training_forward_pass(their_input)
    assert our_output.feature_acts.is_sparse  # the support route ran
    our_output.loss.backward()
    their_output.loss.backward()

    assert set(our_output.losses) == set(their_output.losses)
    for name, value in their_output.losses.items():
        torch.testing.assert_close(our_output.losses[name], value, rtol=1e-9, atol=1e-11, msg=name)
    torch.testing.assert_close(our_output.feature_acts.to_dense(), their_output.feature_acts)
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, getattr(theirs, name).grad, rtol=1e-8, atol=1e-10, msg=name)
    torch.testing.assert_close(ours.topk_threshold, theirs.topk_threshold.to(torch.float64))
