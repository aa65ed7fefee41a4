"""BatchTopK training SAE: ``h = x_c W_enc + b_enc``, ``h' = h ⊙ ‖W_dec,i‖`` (when rescaling).

Training keeps the ``int(k·B)`` largest entries of ``ReLU(h')`` over the whole batch
(:func:`batch_topk`), decodes ``x̂ = (f ⊘ ‖W_dec,i‖) W_dec + b_dec`` and adds AuxK for
dead latents. After every training forward the global threshold follows
``θ ← (1 − η)θ + η·min(f > 0)`` (float64, ``η = topk_threshold_lr``).

In training mode (``sae.train()``, a module's state when built) ``encode`` and ``forward``
apply the batch selection, as SAELens's do: at initialisation a batch's mean L0 is k. A
batch-dependent selection is no function of a single input, so in eval mode (``sae.eval()``,
which the evaluations switch to) they return ``ReLU(h')·1[h' > θ]``, exactly what the saved
``jumprelu`` SAE computes once the decoder norms are folded into the encoder.
``training_forward_pass`` uses the batch selection; on CPU, when ``k`` is at most 1/16 of
``d_sae``, it runs over the selection's support (:mod:`~saecore_sae_batchtopk.support_step`)
with the same losses and gradients.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch
from saecore_sae_topk.row_topk import row_topk
from saecore_sae_topk.sparse_codes import kernel_code_row_dots
from torch import nn

from saecore import TrainingSAE, TrainStepInput, TrainStepOutput
from saecore.sparse import decode_support
from saecore.sparse.auxk import AUX_LOSS_NAME, auxk_error, auxk_fast_reconstruction, auxk_loss, auxk_plan
from saecore.sparse.ranking import (
    check_fold_keeps_selection,
    fold_decoder_norms_for_saving,
    inverse_decoder_norms,
    ranking_scores,
)
from saecore_sae_batchtopk.batch_topk import batch_topk, updated_threshold
from saecore_sae_batchtopk.config import BatchTopKTrainingSAEConfig
from saecore_sae_batchtopk.support_step import (
    SearchStart,
    SupportSelection,
    select_support,
    support_step_output,
    takes_support_route,
)

C = TypeVar("C", bound=BatchTopKTrainingSAEConfig)

THRESHOLD = "topk_threshold"

# The support route's first batch looks for the kept entries among each row's
# CANDIDATES_PER_K · k largest scores; later batches start from what the last one found.
CANDIDATES_PER_K = 2


class BatchTopKTrainingSAE(TrainingSAE[C]):
    """Training recipe ``batchtopk``; saves as the inference ``jumprelu`` architecture."""

    b_enc: nn.Parameter
    topk_threshold: torch.Tensor

    def initialize_weights(self) -> None:
        super().initialize_weights()
        self.b_enc = nn.Parameter(self._zeros(self.cfg.d_sae))
        self.register_buffer(THRESHOLD, torch.zeros((), dtype=torch.float64, device=self.device))
        self.search_start = SearchStart(CANDIDATES_PER_K * math.ceil(self.cfg.k))

    def _apply(self, *args: Any, **kwargs: Any) -> BatchTopKTrainingSAE[C]:
        """``.to(dtype)`` casts every tensor; keep ``θ`` in float64 with its value intact."""
        before = self._buffers[THRESHOLD]
        result = super()._apply(*args, **kwargs)
        after = self._buffers[THRESHOLD]
        if after is not None and before is not None and after.dtype != torch.float64:
            self._buffers[THRESHOLD] = before.to(device=after.device, dtype=torch.float64)
        return result

    # -- encoding ------------------------------------------------------------------------
    def ranking_scores(self, x: torch.Tensor) -> torch.Tensor:
        """``h'``: the hooked pre-activations, times the decoder norms when rescaling."""
        return ranking_scores(self, x, self.cfg.rescale_acts_by_decoder_norm)

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training selection: ``(batch_topk(h', k), h')``."""
        scores = self.ranking_scores(x)
        return self.hook_sae_acts_post(batch_topk(scores, self.cfg.k)), scores

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Training mode: the batch selection. Eval mode: the saved JumpReLU SAE's ``ReLU(h')·1[h' > θ]``."""
        if self.training:
            return self.encode_with_hidden_pre(x)[0]
        scores = self.ranking_scores(x)
        above = (scores > self.topk_threshold.to(scores.dtype)).to(scores.dtype)
        return self.hook_sae_acts_post(scores.relu() * above)

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        if self.cfg.rescale_acts_by_decoder_norm:
            feature_acts = feature_acts / self.W_dec.norm(dim=-1)
        return self.finish_decode(feature_acts @ self.W_dec + self.b_dec)

    # -- training ------------------------------------------------------------------------
    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        if takes_support_route(self, step_input):
            selection, self.search_start = select_support(self, step_input, self.search_start)
            output = self.support_training_step(step_input, selection)
            kept = selection.activations
        else:
            output = super().training_forward_pass(step_input)
            kept = output.feature_acts
        self.topk_threshold = updated_threshold(self.topk_threshold, kept, self.cfg.topk_threshold_lr)
        output.metrics[THRESHOLD] = self.topk_threshold
        return output

    def support_training_step(self, step_input: TrainStepInput, selection: SupportSelection) -> TrainStepOutput:
        """The step from its selection on, over the support: decode, MSE and AuxK as the dense step computes them."""
        decoded = decode_support(selection.values, selection.support, self.W_dec)
        sae_out = self.finish_decode(decoded + self.b_dec)
        aux = self.support_auxk_loss(selection, step_input.dead_neuron_mask, step_input.sae_in - sae_out)
        return support_step_output(step_input, selection, sae_out, {AUX_LOSS_NAME: aux})

    def support_auxk_loss(
        self, selection: SupportSelection, dead_neuron_mask: torch.Tensor | None, residual: torch.Tensor
    ) -> torch.Tensor:
        """AuxK over the latents ``dead_neuron_mask`` marks, from the selection's scores (coefficient applied)."""
        plan = auxk_plan(dead_neuron_mask, self.cfg.d_in)
        if plan is None:
            return residual.new_zeros(())
        reconstruction = auxk_fast_reconstruction(
            plan, selection.centred, selection.hidden_pre, self.W_enc, self.b_enc, self.b_dec, self.W_dec,
            selection.norms, self.cfg.apply_b_dec_to_input, row_topk, kernel_code_row_dots,
        )
        return self.cfg.aux_loss_coefficient * auxk_error(reconstruction, residual, plan)

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        plan = auxk_plan(step_input.dead_neuron_mask, self.cfg.d_in)
        if plan is None:
            return {AUX_LOSS_NAME: sae_out.new_zeros(())}
        loss = auxk_loss(plan, hidden_pre, self.W_dec, step_input.sae_in - sae_out, self.inverse_decoder_norms())
        return {AUX_LOSS_NAME: self.cfg.aux_loss_coefficient * loss}

    def inverse_decoder_norms(self) -> torch.Tensor | None:
        """``1/‖W_dec,i‖``, the decode's per-latent scale when rescaling; else None."""
        return inverse_decoder_norms(self, self.cfg.rescale_acts_by_decoder_norm)

    # -- folding and saving ----------------------------------------------------------------
    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        """Unit decoder rows; output-preserving only when the selection already uses the norms."""
        check_fold_keeps_selection(self, self.cfg.rescale_acts_by_decoder_norm)
        super().fold_W_dec_norm()

    @torch.no_grad()
    def fold_activation_norm_scaling_factor(self, scaling_factor: float) -> None:
        """Folding ``s`` divides ``W_dec`` by ``s``; with rescaling ``h'`` shrinks by ``s``, and so must ``θ``."""
        super().fold_activation_norm_scaling_factor(scaling_factor)
        if self.cfg.rescale_acts_by_decoder_norm:
            self.topk_threshold = self.topk_threshold / scaling_factor

    def process_state_dict_for_saving_inference(self, state_dict: dict[str, torch.Tensor]) -> None:
        """JumpReLU tensors: decoder norms folded into the encoder, ``θ`` as every latent's threshold."""
        super().process_state_dict_for_saving_inference(state_dict)
        theta = state_dict.pop(THRESHOLD)
        if self.cfg.rescale_acts_by_decoder_norm:
            fold_decoder_norms_for_saving(state_dict)
        state_dict["threshold"] = torch.ones_like(state_dict["b_enc"]) * theta.item()
