"""Training AbsTopK SAE: MSE plus AuxK, whose dead latents are also chosen by ``|h'|`` with signs kept.

AuxK as in ``saecore.sparse.auxk`` (``k_aux = d_in // 2``, scaled down when fewer latents
are dead), except that a dead latent with a strongly negative score counts as much as a
strongly positive one.
"""

from __future__ import annotations

import torch

from saecore import TrainingSAE, TrainStepInput
from saecore.errors import ConfigError
from saecore.sparse import AUX_LOSS_NAME, auxk_loss, auxk_plan, fold_decoder_norms_for_saving
from saecore_sae_abstopk.abstopk_sae import AbsTopKBase
from saecore_sae_abstopk.config import AbsTopKTrainingSAEConfig
from saecore_sae_abstopk.selection import largest_magnitudes


class AbsTopKTrainingSAE(AbsTopKBase[AbsTopKTrainingSAEConfig], TrainingSAE[AbsTopKTrainingSAEConfig]):
    """Training AbsTopK SAE (recipe ``abstopk``); saves as the inference ``abstopk`` architecture."""

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        plan = auxk_plan(step_input.dead_neuron_mask, self.cfg.d_in)
        if plan is None:
            return {AUX_LOSS_NAME: sae_out.new_tensor(0.0)}
        if self.cfg.normalize_activations in ("constant_norm_rescale", "layer_norm"):
            raise ConfigError(
                f"normalize_activations={self.cfg.normalize_activations!r} cannot be used with the AbsTopK "
                "auxiliary (AuxK) loss once latents are dead: its reconstruction would be in normalised space "
                "while the residual is in the original one; use 'none' or 'expected_average_only_in'"
            )
        loss = auxk_loss(plan, hidden_pre, self.W_dec, step_input.sae_in - sae_out, self.inverse_decoder_norms(),
                         largest_magnitudes)
        return {AUX_LOSS_NAME: self.cfg.aux_loss_coefficient * loss}

    def process_state_dict_for_saving_inference(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Fold the decoder norms in, so the saved SAE ranks by plain ``h`` with the same result."""
        super().process_state_dict_for_saving_inference(state_dict)
        if self.cfg.rescale_acts_by_decoder_norm:
            fold_decoder_norms_for_saving(state_dict)
