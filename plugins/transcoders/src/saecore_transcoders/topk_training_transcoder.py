"""TopK transcoder training: MSE to the target plus AuxK, with a sparse step.

The step follows the TopK SAE's (``saecore_sae_topk``): encoder scores without a graph,
the ``k`` kept (row, latent) pairs re-entering autograd, and a decode and its gradients
over those pairs only (``decode_codes``), so no dense ``[N, d_sae] × [d_sae, d_out]``
product is formed. AuxK (``saecore.sparse.auxk``) lets dead latents predict what the live
ones miss of the *target*, with ``k_aux = d_out // 2``. When a hook must see dense
activations, or the input needs a gradient, the step falls back to the dense path, which
computes the same losses.
"""

from __future__ import annotations

import torch
from saecore_sae_topk.sparse_codes import (
    code_support,
    codes_to_sparse_coo,
    decode_codes,
    kernel_code_row_dots,
    scatter_codes,
    select_topk,
)
from saecore_sae_topk.sparse_encoder import encoder_scores

from saecore import TrainCoefficientConfig, TrainStepInput, TrainStepOutput
from saecore.sparse import fold_decoder_norms_for_saving, latent_firing_counts, preactivations_at_support
from saecore.sparse.auxk import AUX_LOSS_NAME, auxk_error, auxk_fast_reconstruction, auxk_loss, auxk_plan
from saecore.training_sae import mse_loss
from saecore_transcoders.config import TopKTrainingTranscoderConfig
from saecore_transcoders.topk_transcoder import TopKTranscoder
from saecore_transcoders.training_transcoder import TrainingTranscoder
from saecore_transcoders.transcoder import SkipTranscoder


class TopKTrainingTranscoder(TopKTranscoder, TrainingTranscoder):
    """Training recipe ``topk_transcoder``; saves as the ``topk_transcoder`` architecture."""

    cfg: TopKTrainingTranscoderConfig  # type: ignore[assignment]

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        return {}

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_pre = self.ranking_scores(x)
        ranked, indices = select_topk(hidden_pre, self.cfg.k)
        return self.hook_sae_acts_post(scatter_codes(ranked.relu(), indices, self.cfg.d_sae)), hidden_pre

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        plan = auxk_plan(step_input.dead_neuron_mask, self.cfg.d_out)
        if plan is None:
            return {AUX_LOSS_NAME: sae_out.new_tensor(0.0)}
        inv_norms = 1 / self.W_dec.norm(dim=-1) if self.cfg.rescale_acts_by_decoder_norm else None
        loss = auxk_loss(plan, hidden_pre, self.W_dec, step_input.target - sae_out, inv_norms,
                         select_topk, kernel_code_row_dots)
        return {AUX_LOSS_NAME: self.cfg.aux_loss_coefficient * loss}

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        needs_dense = self.hook_sae_acts_pre.is_hooked or self.hook_sae_acts_post.is_hooked
        if needs_dense or step_input.sae_in.requires_grad:
            return super().training_forward_pass(step_input)
        return self._sparse_training_forward_pass(step_input)

    def _sparse_training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        cfg = self.cfg
        x = self.normalize_in(self.hook_sae_input(step_input.sae_in.to(self.dtype)))
        norms = self.W_dec.detach().norm(dim=-1) if cfg.rescale_acts_by_decoder_norm else None
        plan = auxk_plan(step_input.dead_neuron_mask, cfg.d_out)
        params = (self.W_enc, self.b_enc, self.b_dec)
        encoder_in, hidden_pre = encoder_scores(x, *params, norms, False)
        scores, indices = select_topk(hidden_pre, cfg.k)
        support = code_support(indices, cfg.d_sae)
        with torch.no_grad():
            unscaled = scores.clone() if norms is None else scores / norms[indices]
        acts = preactivations_at_support(unscaled, support, encoder_in, *params, False).relu()
        decoded = decode_codes(acts, indices, self.W_dec, support)
        sae_out = self.add_skip(step_input.sae_in, self.finish_decode(decoded + self.b_dec))
        target = step_input.target
        mse = mse_loss(sae_out, target)
        if plan is None:
            aux = sae_out.new_tensor(0.0)
        else:
            aux_recons = auxk_fast_reconstruction(
                plan, encoder_in, hidden_pre, *params, self.W_dec, norms, False, select_topk, kernel_code_row_dots,
            )
            aux = cfg.aux_loss_coefficient * auxk_error(aux_recons, target - sae_out, plan)
        with torch.no_grad():
            firing_counts = latent_firing_counts(indices, cfg.d_sae, acts != 0)
            reported = acts.detach() if norms is None else acts.detach() * norms[indices]
            if step_input.is_logging_step:
                feature_acts = scatter_codes(reported, indices, cfg.d_sae)
            else:
                feature_acts = codes_to_sparse_coo(reported, indices, cfg.d_sae)
        return TrainStepOutput(
            sae_in=step_input.sae_in,
            target=target,
            sae_out=sae_out,
            feature_acts=feature_acts,
            hidden_pre=hidden_pre,
            loss=mse + aux,
            losses={"mse_loss": mse, AUX_LOSS_NAME: aux},
            firing_counts=firing_counts,
        )

    def process_state_dict_for_saving_inference(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Fold the decoder norms in, so the saved transcoder ranks by plain ``h`` with the same result."""
        super().process_state_dict_for_saving_inference(state_dict)
        if self.cfg.rescale_acts_by_decoder_norm:
            fold_decoder_norms_for_saving(state_dict)


class TopKSkipTrainingTranscoder(TopKTrainingTranscoder, SkipTranscoder):
    """Training recipe ``topk_skip_transcoder``; saves as the ``topk_skip_transcoder`` architecture."""
