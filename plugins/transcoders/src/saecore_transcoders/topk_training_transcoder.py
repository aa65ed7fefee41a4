"""TopK transcoder training: MSE to the target plus AuxK, with a sparse step.

The step is the TopK SAE's (``saecore_sae_topk.sparse_training_step``) with the target in
place of the input and the skip connection's term added to the prediction, so no dense
``[N, d_sae] × [d_sae, d_out]`` product is formed. AuxK (``saecore.sparse.auxk``) lets dead
latents predict what the live ones miss of the *target*, with ``k_aux = d_out // 2``. When
a hook must see dense activations, the input needs a gradient, or it is not a matrix of
rows (``[batch, pos, d_in]``), the step falls back to the dense path, which computes the
same losses.
"""

from __future__ import annotations

import torch
from saecore_sae_topk.sparse_codes import kernel_code_row_dots, scatter_codes, select_topk
from saecore_sae_topk.sparse_training_step import sparse_step_applies, topk_sparse_training_step

from saecore import TrainCoefficientConfig, TrainStepInput, TrainStepOutput
from saecore.sparse import fold_decoder_norms_for_saving
from saecore.sparse.auxk import AUX_LOSS_NAME, auxk_loss, auxk_plan
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
        if not sparse_step_applies(self, step_input):
            return super().training_forward_pass(step_input)
        cfg = self.cfg
        return topk_sparse_training_step(
            self,
            step_input,
            k=cfg.k,
            rescale_acts_by_decoder_norm=cfg.rescale_acts_by_decoder_norm,
            apply_b_dec_to_input=False,
            aux_plan=auxk_plan(step_input.dead_neuron_mask, cfg.d_out),
            aux_loss_coefficient=cfg.aux_loss_coefficient,
            dense_feature_acts=step_input.is_logging_step,
            extra_prediction=self.skip_prediction(step_input.sae_in),
        )

    def process_state_dict_for_saving_inference(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Fold the decoder norms in, so the saved transcoder ranks by plain ``h`` with the same result."""
        super().process_state_dict_for_saving_inference(state_dict)
        if self.cfg.rescale_acts_by_decoder_norm:
            fold_decoder_norms_for_saving(state_dict)


class TopKSkipTrainingTranscoder(TopKTrainingTranscoder, SkipTranscoder):
    """Training recipe ``topk_skip_transcoder``; saves as the ``topk_skip_transcoder`` architecture."""
