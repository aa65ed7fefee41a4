"""Matryoshka BatchTopK (Bussmann et al. 2025; Nabeshima 2024) on top of the batchtopk recipe.

With the BatchTopK activations ``f`` and codes ``c = f ⊘ ‖W_dec,i‖`` (``c = f`` without
rescaling), each inner width ``w`` adds ``inner_mse_loss_w = mean_b ‖b_dec + Σ_{j<w} c_j W_dec,j − x‖²``
to BatchTopK's loss. The first latents must reconstruct the input on their own, so they
learn the general, frequent features, and later latents refine them instead of absorbing
them. Everything else (selection, threshold, saving as ``jumprelu``) is BatchTopK's.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from saecore_sae_batchtopk.batchtopk_sae import BatchTopKTrainingSAE

from saecore import TrainStepInput, TrainStepOutput
from saecore.sparse import AUX_LOSS_NAME, auxk_loss, auxk_plan
from saecore.training_sae import mse_loss
from saecore_sae_matryoshka_batchtopk.config import MatryoshkaBatchTopKTrainingSAEConfig


class MatryoshkaBatchTopKTrainingSAE(BatchTopKTrainingSAE[MatryoshkaBatchTopKTrainingSAEConfig]):
    """Training recipe ``matryoshka_batchtopk``; saves as the inference ``jumprelu`` architecture."""

    def nested_reconstructions(
        self, feature_acts: torch.Tensor, include_outer: bool
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """``(w, b_dec + Σ_{j<w} c_j W_dec,j)`` for each level, each level adding only its own latents.

        The normalisations a config may use here (``none``, ``expected_average_only_in``)
        leave decoded outputs unchanged, so these are directly comparable with the input.
        """
        codes = feature_acts
        if self.cfg.rescale_acts_by_decoder_norm:
            codes = codes / self.W_dec.norm(dim=-1)
        widths = self.cfg.matryoshka_widths if include_outer else self.cfg.matryoshka_widths[:-1]
        recons, start = self.b_dec, 0
        for width in widths:
            recons = recons + codes[..., start:width] @ self.W_dec[start:width]
            start = width
            yield width, recons

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        output = super().training_forward_pass(step_input)
        for width, recons in self.nested_reconstructions(output.feature_acts, include_outer=False):
            inner = mse_loss(recons, step_input.sae_in)
            output.losses[f"inner_mse_loss_{width}"] = inner
            output.loss = output.loss + inner
        return output

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        dead = step_input.dead_neuron_mask
        if not self.cfg.use_matryoshka_aux_loss or dead is None or not bool(dead.any()):
            return super().calculate_aux_loss(step_input, feature_acts, hidden_pre, sae_out)
        level_losses = []
        inverse_norms = self.inverse_decoder_norms()
        start = 0
        for width, recons in self.nested_reconstructions(feature_acts, include_outer=True):
            level = slice(start, width)
            plan = auxk_plan(dead[level], self.cfg.d_in)
            if plan is not None:
                level_losses.append(auxk_loss(
                    plan, hidden_pre[..., level], self.W_dec[level], step_input.sae_in - recons,
                    None if inverse_norms is None else inverse_norms[level],
                ))
            start = width
        if not level_losses:
            return {AUX_LOSS_NAME: sae_out.new_zeros(())}
        return {AUX_LOSS_NAME: self.cfg.aux_loss_coefficient * torch.stack(level_losses).sum()}
