"""The TopK sparse training step over a support: MSE to the target plus AuxK, no dense decode.

One step serves every recipe that encodes with TopK and decodes linearly: the TopK SAE
(target = its input) and the TopK transcoders (target = the output hook's activation,
with a skip connection's prediction added). The encoder scores are computed without a
graph (``sparse_encoder``), the ``k`` kept (row, latent) pairs re-enter autograd
(``saecore.sparse.preactivations_at_support``), and the decode and its gradients run over
those pairs only (``decode_codes``), sorted once by latent (``code_support``) for both
weight gradients. AuxK (``saecore.sparse.auxk``) lets dead latents predict the residual
``target − prediction``.

The step applies when ``sparse_step_applies``: otherwise the caller takes its dense path,
which computes the same losses. The caller supplies the AuxK plan, whose ``k_aux``
depends on the width of the target.
"""

from __future__ import annotations

from typing import Any

import torch

from saecore import SAE, TrainStepInput, TrainStepOutput
from saecore.sparse import latent_firing_counts, preactivations_at_support
from saecore.sparse.auxk import AUX_LOSS_NAME, AuxKPlan, auxk_error, auxk_fast_reconstruction
from saecore.training_sae import mse_loss
from saecore_sae_topk.sparse_codes import (
    code_support,
    codes_to_sparse_coo,
    decode_codes,
    kernel_code_row_dots,
    scatter_codes,
    select_topk,
)
from saecore_sae_topk.sparse_encoder import encoder_scores


def sparse_step_applies(sae: SAE[Any], step_input: TrainStepInput) -> bool:
    """No hook must see (and may replace) dense activations, the input needs no gradient, and it is rows.

    The sparse step works on ``[batch, d_in]`` rows; other shapes (``[batch, pos, d_in]``)
    take the dense path.
    """
    hooked = sae.hook_sae_acts_pre.is_hooked or sae.hook_sae_acts_post.is_hooked
    return not hooked and not step_input.sae_in.requires_grad and step_input.sae_in.ndim == 2


def topk_sparse_training_step(
    sae: SAE[Any],
    step_input: TrainStepInput,
    *,
    k: int,
    rescale_acts_by_decoder_norm: bool,
    apply_b_dec_to_input: bool,
    aux_plan: AuxKPlan | None,
    aux_loss_coefficient: float,
    dense_feature_acts: bool,
    extra_prediction: torch.Tensor | None = None,
) -> TrainStepOutput:
    """One step of ``sae`` (with ``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``) on ``step_input``'s rows.

    ``extra_prediction`` (a skip connection's term, with its own graph) is added to the
    decoded prediction before the losses. ``feature_acts`` are dense when
    ``dense_feature_acts`` (logging steps), else a sparse COO tensor: the trainer only
    logs them, and counts firing latents from ``firing_counts``.
    """
    sae_in = step_input.sae_in
    target = step_input.target
    d_sae = sae.W_enc.shape[1]
    x = sae.normalize_in(sae.hook_sae_input(sae_in.to(sae.dtype)))
    norms = sae.W_dec.detach().norm(dim=-1) if rescale_acts_by_decoder_norm else None
    params = (sae.W_enc, sae.b_enc, sae.b_dec)
    encoder_in, hidden_pre = encoder_scores(x, *params, norms, apply_b_dec_to_input)
    scores, indices = select_topk(hidden_pre, k)
    support = code_support(indices, d_sae)
    with torch.no_grad():
        unscaled = scores.clone() if norms is None else scores / norms[indices]
    acts = preactivations_at_support(unscaled, support, encoder_in, *params, apply_b_dec_to_input).relu()
    sae_out = sae.finish_decode(decode_codes(acts, indices, sae.W_dec, support) + sae.b_dec)
    if extra_prediction is not None:
        sae_out = sae_out + extra_prediction
    mse = mse_loss(sae_out, target)
    if aux_plan is None:
        aux = sae_out.new_tensor(0.0)
    else:
        aux_recons = auxk_fast_reconstruction(
            aux_plan, encoder_in, hidden_pre, *params, sae.W_dec, norms, apply_b_dec_to_input,
            select_topk, kernel_code_row_dots,
        )
        aux = aux_loss_coefficient * auxk_error(aux_recons, target - sae_out, aux_plan)
    with torch.no_grad():
        firing_counts = latent_firing_counts(indices, d_sae, acts != 0)
        reported = acts.detach() if norms is None else acts.detach() * norms[indices]
        if dense_feature_acts:
            feature_acts = scatter_codes(reported, indices, d_sae)
        else:
            feature_acts = codes_to_sparse_coo(reported, indices, d_sae)
    return TrainStepOutput(
        sae_in=sae_in,
        target=target,
        sae_out=sae_out,
        feature_acts=feature_acts,
        hidden_pre=hidden_pre,
        loss=mse + aux,
        losses={"mse_loss": mse, AUX_LOSS_NAME: aux},
        firing_counts=firing_counts,
    )
