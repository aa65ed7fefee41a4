"""Matryoshka BatchTopK (Bussmann et al. 2025; Nabeshima 2024) on top of the batchtopk recipe.

With the BatchTopK activations ``f`` and codes ``c = f ⊘ ‖W_dec,i‖`` (``c = f`` without
rescaling), each inner width ``w`` adds ``inner_mse_loss_w = mean_b ‖b_dec + Σ_{j<w} c_j W_dec,j − x‖²``
to BatchTopK's loss. The first latents must reconstruct the input on their own, so they
learn the general, frequent features, and later latents refine them instead of absorbing
them. Everything else (selection, threshold, saving as ``jumprelu``) is BatchTopK's.

On BatchTopK's support route the nested reconstructions come from the same sparse codes:
each level decodes only its own kept entries (sharing one sort of them by latent, and one
decoder gradient: :func:`~saecore_sae_matryoshka_batchtopk.level_decodes.level_decodes`),
so the levels together cost one sparse decode and no dense product; the prefixes (running
sums of those level decodes) and their errors are one autograd node
(:func:`~saecore_sae_matryoshka_batchtopk.nested_errors.nested_errors`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from saecore_sae_batchtopk.batchtopk_sae import BatchTopKTrainingSAE
from saecore_sae_batchtopk.support_step import SupportSelection, support_step_output

from saecore import TrainStepInput, TrainStepOutput
from saecore.sparse import AUX_LOSS_NAME, auxk_loss, auxk_plan
from saecore.training_sae import mse_loss
from saecore_sae_matryoshka_batchtopk.config import MatryoshkaBatchTopKTrainingSAEConfig
from saecore_sae_matryoshka_batchtopk.level_decodes import level_decodes
from saecore_sae_matryoshka_batchtopk.nested_errors import nested_errors


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

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """AuxK (per level with ``use_matryoshka_aux_loss``), then one ``inner_mse_loss_w`` per inner level."""
        inner = {
            f"inner_mse_loss_{width}": mse_loss(recons, step_input.sae_in)
            for width, recons in self.nested_reconstructions(feature_acts, include_outer=False)
        }
        return {**self._dense_auxk(step_input, feature_acts, hidden_pre, sae_out), **inner}

    def _dense_auxk(
        self, step_input: TrainStepInput, feature_acts: torch.Tensor, hidden_pre: torch.Tensor, sae_out: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        dead = step_input.dead_neuron_mask
        if not self._per_level_auxk(dead):
            return super().calculate_aux_loss(step_input, feature_acts, hidden_pre, sae_out)
        assert dead is not None
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

    def _per_level_auxk(self, dead: torch.Tensor | None) -> bool:
        return self.cfg.use_matryoshka_aux_loss and dead is not None and bool(dead.any())

    def support_training_step(self, step_input: TrainStepInput, selection: SupportSelection) -> TrainStepOutput:
        """The nested losses over the support: the level decodes in one node, prefixes and errors in another."""
        support, x, dead = selection.support, step_input.sae_in, step_input.dead_neuron_mask
        decodes = level_decodes(selection.values, support, self.W_dec, self.cfg.matryoshka_widths)
        inner_errors, recons = nested_errors(self.b_dec, x, decodes)
        sae_out = self.finish_decode(recons)
        if self._per_level_auxk(dead):
            assert dead is not None
            aux = self._support_per_level_auxk(selection, dead, x, decodes)
        else:
            aux = self.support_auxk_loss(selection, dead, x - sae_out)
        inner_widths = self.cfg.matryoshka_widths[:-1]
        inner = {f"inner_mse_loss_{width}": inner_errors[level] for level, width in enumerate(inner_widths)}
        return support_step_output(step_input, selection, sae_out, {AUX_LOSS_NAME: aux, **inner})

    def _support_per_level_auxk(
        self, selection: SupportSelection, dead: torch.Tensor, x: torch.Tensor, decodes: list[torch.Tensor]
    ) -> torch.Tensor:
        """Each level's AuxK against what its prefix misses (AuxK detaches the residual, so no graph is kept)."""
        level_losses, start, prefix = [], 0, self.b_dec.detach()
        for width, decode in zip(self.cfg.matryoshka_widths, decodes):
            prefix = prefix + decode.detach()
            level_dead = torch.zeros_like(dead)
            level_dead[start:width] = dead[start:width]
            if bool(level_dead.any()):
                level_losses.append(self.support_auxk_loss(selection, level_dead, x - prefix))
            start = width
        return torch.stack(level_losses).sum()
