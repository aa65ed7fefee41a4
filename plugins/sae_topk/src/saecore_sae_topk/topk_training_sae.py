"""TopK training recipe: MSE plus AuxK, with a sparse training step.

AuxK (Gao et al. 2024, App. B.1), when some latents are dead:
``k_aux = d_in // 2``, ``scale = min(n_dead / k_aux, 1)``, ``k_aux ← min(k_aux, n_dead)``;
``a`` = the top-``k_aux`` ranking scores ``h'`` among dead latents, raw (no ReLU);
``ê = (a ⊘ ‖W_dec,i‖) W_dec`` (no bias); ``e = stopgrad(x − x̂)``;
``loss = aux_loss_coefficient · scale · mean_b ‖ê − e‖²``.

``training_forward_pass`` never builds a dense gradient or a dense decode: see
``sparse_training_step``. Its ``feature_acts`` are dense only on logging steps
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
from saecore.sparse import fold_decoder_norms_for_saving
from saecore.sparse.auxk import AUX_LOSS_NAME, AuxKPlan, auxk_loss, auxk_plan
from saecore_sae_topk.config import TopKTrainingSAEConfig
from saecore_sae_topk.sparse_codes import codes_to_sparse_coo, kernel_code_row_dots, scatter_codes, select_topk
from saecore_sae_topk.sparse_training_step import sparse_step_applies, topk_sparse_training_step
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
        if not sparse_step_applies(self, step_input):
            output = super().training_forward_pass(step_input)
            if output.feature_acts.is_sparse:
                output.firing_counts = _sparse_firing_counts(output.feature_acts)
            return output
        cfg = self.cfg
        return topk_sparse_training_step(
            self,
            step_input,
            k=cfg.k,
            rescale_acts_by_decoder_norm=cfg.rescale_acts_by_decoder_norm,
            apply_b_dec_to_input=cfg.apply_b_dec_to_input,
            aux_plan=self.auxk_plan(step_input.dead_neuron_mask),
            aux_loss_coefficient=cfg.aux_loss_coefficient,
            dense_feature_acts=step_input.is_logging_step and not cfg.use_sparse_activations,
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
