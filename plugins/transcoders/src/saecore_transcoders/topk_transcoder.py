"""TopK transcoders: the ``k`` largest pre-activations of each input fire (sparsify's transcoders).

Selection and decoding use the TopK plugin's kernels: ``decode`` reads only the ``k`` decoder
rows an input uses, never a dense ``[N, d_sae] × [d_sae, d_out]`` product.
"""

from __future__ import annotations

import torch
from saecore_sae_topk.sparse_codes import (
    decode_codes,
    decode_dense_activations,
    decode_sparse_activations,
    scatter_codes,
    select_topk,
)

from saecore.sparse import check_fold_keeps_selection, inverse_decoder_norms, ranking_scores
from saecore_transcoders.config import TopKTranscoderConfig
from saecore_transcoders.transcoder import SkipTranscoder, Transcoder


class TopKTranscoder(Transcoder):
    """``architecture: "topk_transcoder"``.

    With ``rescale_acts_by_decoder_norm`` latents are ranked by ``h_i·‖W_dec,i‖`` and the kept
    values are divided by the norm again before decoding.
    """

    cfg: TopKTranscoderConfig

    def ranking_scores(self, x: torch.Tensor) -> torch.Tensor:
        return ranking_scores(self, x, self.cfg.rescale_acts_by_decoder_norm)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        ranked, indices = select_topk(self.ranking_scores(x), self.cfg.k)
        return self.hook_sae_acts_post(scatter_codes(ranked.relu(), indices, self.cfg.d_sae))

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        inv_norms = inverse_decoder_norms(self, self.cfg.rescale_acts_by_decoder_norm)
        if feature_acts.is_sparse:
            recons = decode_sparse_activations(feature_acts, self.W_dec, inv_norms)
        else:
            recons = decode_dense_activations(feature_acts, self.W_dec, inv_norms)
        return self.finish_decode(recons + self.b_dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Decodes straight from the ``k`` kept latents unless a hook must see the dense activations."""
        if self.use_error_term or self.hook_sae_acts_post.is_hooked:
            return super().forward(x)
        ranked, indices = select_topk(self.ranking_scores(x), self.cfg.k)
        acts = ranked.relu()
        inv_norms = inverse_decoder_norms(self, self.cfg.rescale_acts_by_decoder_norm)
        if inv_norms is not None:
            acts = acts * inv_norms[indices]
        sae_out = self.finish_decode(decode_codes(acts, indices, self.W_dec) + self.b_dec)
        return self.hook_sae_output(self.add_skip(x, sae_out))

    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        """Unit decoder rows; only output-preserving when ranking already uses the norms."""
        check_fold_keeps_selection(self, self.cfg.rescale_acts_by_decoder_norm)
        super().fold_W_dec_norm()


class TopKSkipTranscoder(TopKTranscoder, SkipTranscoder):
    """``architecture: "topk_skip_transcoder"``: TopK with a skip connection."""
