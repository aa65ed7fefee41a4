"""TopK training recipe: MSE plus AuxK, with a sparse training step.

AuxK (Gao et al. 2024, App. B.1), when some latents are dead:
``k_aux = d_in // 2``, ``scale = min(n_dead / k_aux, 1)``, ``k_aux ← min(k_aux, n_dead)``;
``a`` = the top-``k_aux`` ranking scores ``h'`` among dead latents, raw (no ReLU);
``ê = (a ⊘ ‖W_dec,i‖) W_dec`` (no bias); ``e = stopgrad(x − x̂)``;
``loss = aux_loss_coefficient · scale · mean_b ‖ê − e‖²``.

``training_forward_pass`` never builds a dense gradient or a dense decode: see
``sparse_encoder`` and ``saecore.sparse`` (``auxk``). Its ``feature_acts`` are dense only on logging steps
(``step_input.is_logging_step``) or never with ``use_sparse_activations``; on other steps
they are a sparse COO tensor, because the trainer reads them only to log metrics (which
densify sparse input) and counts firing latents from ``firing_counts``, which is always
filled. Building the dense ``[N, d_sae]`` tensor costs a zero-fill of fresh memory each
step. When a hook on the pre- or post-activations must see (and may
replace) dense tensors, the input itself needs a gradient, or the input is not a matrix
of rows (``[batch, pos, d_in]``), it falls back to the generic dense path of
``TrainingSAE``, which computes the same losses.
"""

from __future__ import annotations

import torch

from saecore import ConfigError, TrainingSAE, TrainStepInput, TrainStepOutput
from saecore.sparse import fold_decoder_norms_for_saving, latent_firing_counts, preactivations_at_support
from saecore.sparse.auxk import AUX_LOSS_NAME, AuxKPlan, auxk_error, auxk_fast_reconstruction, auxk_loss, auxk_plan
from saecore.training_sae import mse_loss
from saecore_sae_topk.config import TopKTrainingSAEConfig
from saecore_sae_topk.sparse_codes import (
    code_support,
    codes_to_sparse_coo,
    decode_codes,
    kernel_code_row_dots,
    scatter_codes,
    select_topk,
)
from saecore_sae_topk.sparse_encoder import encoder_scores
from saecore_sae_topk.topk_sae import TopKBase


class TopKTrainingSAE(TopKBase[TopKTrainingSAEConfig], TrainingSAE[TopKTrainingSAEConfig]):
    """Training TopK SAE (recipe ``topk``); saves as the inference ``topk`` architecture."""

    # -- generic (dense, plain autograd) contract ------------------------------------------
    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(feature_acts, h')``; the activations are sparse COO if ``use_sparse_activations``."""
        hidden_pre = self.ranking_scores(x)
        ranked, indices = select_topk(hidden_pre, self.cfg.k)
        acts = ranked.relu()
        if self.cfg.use_sparse_activations and not self.hook_sae_acts_post.is_hooked:
            return codes_to_sparse_coo(acts, indices, self.cfg.d_sae), hidden_pre
        return self.hook_sae_acts_post(scatter_codes(acts, indices, self.cfg.d_sae)), hidden_pre

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        plan = self.auxk_plan(step_input.dead_neuron_mask)
        if plan is None:
            return {AUX_LOSS_NAME: sae_out.new_tensor(0.0)}
        loss = auxk_loss(plan, hidden_pre, self.W_dec, step_input.sae_in - sae_out, self.inverse_decoder_norms(),
                         select_topk, kernel_code_row_dots)
        return {AUX_LOSS_NAME: self.cfg.aux_loss_coefficient * loss}

    def auxk_plan(self, dead_neuron_mask: torch.Tensor | None) -> AuxKPlan | None:
        """None when no latent is dead (then the auxiliary loss is 0)."""
        plan = auxk_plan(dead_neuron_mask, self.cfg.d_in)
        if plan is not None and self.cfg.normalize_activations in ("constant_norm_rescale", "layer_norm"):
            raise ConfigError(
                f"normalize_activations={self.cfg.normalize_activations!r} cannot be used with the TopK "
                "auxiliary (AuxK) loss: its reconstruction would be in normalised space while the residual "
                "is in the original one; use 'none' or 'expected_average_only_in'"
            )
        return plan

    # -- the training step -------------------------------------------------------------------
    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        needs_dense = self.hook_sae_acts_pre.is_hooked or self.hook_sae_acts_post.is_hooked
        # The sparse path works on [batch, d_in] rows; other shapes ([batch, pos, d_in]) take the dense one.
        if needs_dense or step_input.sae_in.requires_grad or step_input.sae_in.ndim != 2:
            output = super().training_forward_pass(step_input)
            if output.feature_acts.is_sparse:
                output.firing_counts = _sparse_firing_counts(output.feature_acts)
            return output
        return self._sparse_training_forward_pass(step_input)

    def _sparse_training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        cfg = self.cfg
        sae_in = step_input.sae_in
        x = self.normalize_in(self.hook_sae_input(sae_in.to(self.dtype)))
        norms = self.W_dec.detach().norm(dim=-1) if cfg.rescale_acts_by_decoder_norm else None
        plan = self.auxk_plan(step_input.dead_neuron_mask)
        params = (self.W_enc, self.b_enc, self.b_dec)
        centred, hidden_pre = encoder_scores(x, *params, norms, cfg.apply_b_dec_to_input)
        scores, indices = select_topk(hidden_pre, cfg.k)
        support = code_support(indices, cfg.d_sae)  # one sort by latent for both weight gradients
        with torch.no_grad():
            unscaled = scores.clone() if norms is None else scores / norms[indices]
        values = preactivations_at_support(unscaled, support, centred, *params, cfg.apply_b_dec_to_input)
        acts = values.relu()
        sae_out = self.finish_decode(decode_codes(acts, indices, self.W_dec, support) + self.b_dec)
        mse = mse_loss(sae_out, sae_in)
        if plan is None:
            aux = sae_out.new_tensor(0.0)
        else:
            aux_recons = auxk_fast_reconstruction(
                plan, centred, hidden_pre, *params, self.W_dec, norms, cfg.apply_b_dec_to_input,
                select_topk, kernel_code_row_dots,
            )
            aux = cfg.aux_loss_coefficient * auxk_error(aux_recons, sae_in - sae_out, plan)
        with torch.no_grad():
            firing_counts = latent_firing_counts(indices, cfg.d_sae, acts != 0)
            reported = acts.detach() if norms is None else acts.detach() * norms[indices]
            if cfg.use_sparse_activations or not step_input.is_logging_step:
                feature_acts = codes_to_sparse_coo(reported, indices, cfg.d_sae)
            else:
                feature_acts = scatter_codes(reported, indices, cfg.d_sae)
        return TrainStepOutput(
            sae_in=sae_in,
            sae_out=sae_out,
            feature_acts=feature_acts,
            hidden_pre=hidden_pre,
            loss=mse + aux,
            losses={"mse_loss": mse, AUX_LOSS_NAME: aux},
            firing_counts=firing_counts,
        )

    # -- saving ----------------------------------------------------------------------------------
    def process_state_dict_for_saving_inference(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Fold the decoder norms in, so the saved SAE ranks by plain ``h`` with the same result."""
        super().process_state_dict_for_saving_inference(state_dict)
        if self.cfg.rescale_acts_by_decoder_norm:
            fold_decoder_norms_for_saving(state_dict)


def _sparse_firing_counts(feature_acts: torch.Tensor) -> torch.Tensor:
    coalesced = feature_acts.detach().coalesce()
    latents = coalesced.indices()[-1]
    return torch.bincount(latents[coalesced.values() != 0], minlength=feature_acts.shape[-1])
