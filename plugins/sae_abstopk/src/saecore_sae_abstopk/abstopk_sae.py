"""AbsTopK SAE: ``f = keep_k(h')`` by ``|h'|`` with signs kept, ``h = (x − b_dec) W_enc + b_enc``.

``h' = h ⊙ ‖W_dec,i‖`` when ``rescale_acts_by_decoder_norm`` (else ``h' = h``), and
``x̂ = (f ⊘ ‖W_dec,i‖) W_dec + b_dec`` with the same rescale. No ReLU: a kept latent may
be negative.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

from saecore import SAE
from saecore.sparse import check_fold_keeps_selection, decode_product, inverse_decoder_norms, ranking_scores
from saecore_sae_abstopk.config import AbsTopKSAEConfig, AbsTopKTrainingSAEConfig
from saecore_sae_abstopk.selection import keep_largest_magnitudes

C = TypeVar("C", AbsTopKSAEConfig, AbsTopKTrainingSAEConfig)


class AbsTopKBase(SAE[C]):
    """What the inference and the training AbsTopK SAE share: parameters, selection, decoding."""

    b_enc: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        self.b_enc = nn.Parameter(self._zeros(self.cfg.d_sae))

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f, h')``: the kept signed activations and the scores they were ranked by."""
        scores = ranking_scores(self, x, self.cfg.rescale_acts_by_decoder_norm)
        return self.hook_sae_acts_post(keep_largest_magnitudes(scores, self.cfg.k)), scores

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_with_hidden_pre(x)[0]

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        recons = decode_product(feature_acts, self.W_dec, self.inverse_decoder_norms())
        return self.finish_decode(recons + self.b_dec)

    def inverse_decoder_norms(self) -> torch.Tensor | None:
        """``1/‖W_dec,i‖`` when activations are rescaled, else None."""
        return inverse_decoder_norms(self, self.cfg.rescale_acts_by_decoder_norm)

    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        """Unit decoder rows; only output-preserving when ranking already uses the norms."""
        check_fold_keeps_selection(self, self.cfg.rescale_acts_by_decoder_norm)
        super().fold_W_dec_norm()


class AbsTopKSAE(AbsTopKBase[AbsTopKSAEConfig]):
    """Inference AbsTopK SAE (architecture ``abstopk``)."""
