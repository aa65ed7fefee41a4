"""TopK SAE: ``f = scatter(ReLU(topk_k(h')))`` with ``h = (x − b_dec) W_enc + b_enc``.

``h' = h ⊙ ‖W_dec,i‖`` when ``rescale_acts_by_decoder_norm`` (else ``h' = h``), and
``x̂ = (f ⊘ ‖W_dec,i‖) W_dec + b_dec`` with the same rescale. ``encode`` returns the
dense activations (the public contract); ``forward`` never builds them unless a hook on
``hook_sae_acts_post`` needs to see them, and decodes from the k kept latents directly.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

from saecore import SAE
from saecore.sparse import check_fold_keeps_selection, inverse_decoder_norms, ranking_scores
from saecore_sae_topk.config import TopKSAEConfig, TopKTrainingSAEConfig
from saecore_sae_topk.sparse_codes import (
    decode_codes,
    decode_dense_activations,
    decode_sparse_activations,
    scatter_codes,
    select_topk,
)

C = TypeVar("C", TopKSAEConfig, TopKTrainingSAEConfig)


class TopKBase(SAE[C]):
    """What the inference and the training TopK SAE share: parameters, ranking, decoding."""

    b_enc: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        self.b_enc = nn.Parameter(self._zeros(self.cfg.d_sae))

    def ranking_scores(self, x: torch.Tensor) -> torch.Tensor:
        """``h'``: the hooked pre-activations, times the decoder norms when rescaling."""
        return ranking_scores(self, x, self.cfg.rescale_acts_by_decoder_norm)

    def inverse_decoder_norms(self) -> torch.Tensor | None:
        """``1/‖W_dec,i‖`` when activations are rescaled (unclamped, as in SAELens), else None."""
        return inverse_decoder_norms(self, self.cfg.rescale_acts_by_decoder_norm)

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """Decode dense or sparse-COO activations ``[..., d_sae]``, reading only their nonzeros."""
        inv_norms = self.inverse_decoder_norms()
        if feature_acts.is_sparse:
            recons = decode_sparse_activations(feature_acts, self.W_dec, inv_norms)
        else:
            recons = decode_dense_activations(feature_acts, self.W_dec, inv_norms)
        return self.finish_decode(recons + self.b_dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hook_sae_acts_post.is_hooked:
            return super().forward(x)
        sae_out = self._sparse_forward(x)
        if self.use_error_term:
            with torch.no_grad(), self._hooks_bypassed():
                clean = self._sparse_forward(x)
            sae_out = sae_out + self.hook_sae_error(x.to(clean.dtype) - clean)
        return self.hook_sae_output(sae_out)

    def _sparse_forward(self, x: torch.Tensor) -> torch.Tensor:
        ranked, indices = select_topk(self.ranking_scores(x), self.cfg.k)
        acts = ranked.relu()
        inv_norms = self.inverse_decoder_norms()
        if inv_norms is not None:
            acts = acts * inv_norms[indices]
        return self.finish_decode(decode_codes(acts, indices, self.W_dec) + self.b_dec)

    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        """Unit decoder rows; only output-preserving when ranking already uses the norms."""
        check_fold_keeps_selection(self, self.cfg.rescale_acts_by_decoder_norm)
        super().fold_W_dec_norm()


class TopKSAE(TopKBase[TopKSAEConfig]):
    """Inference TopK SAE (``architecture: "topk"``)."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        ranked, indices = select_topk(self.ranking_scores(x), self.cfg.k)
        return self.hook_sae_acts_post(scatter_codes(ranked.relu(), indices, self.cfg.d_sae))
