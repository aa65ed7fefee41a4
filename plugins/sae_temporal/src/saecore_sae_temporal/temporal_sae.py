"""Temporal SAE (Lubana et al., arXiv:2511.01836): ``x_t = D(z_pred,t + z_novel,t) + b``.

With ``x`` the processed input (normalised, ``b_dec`` subtracted when
``apply_b_dec_to_input``), ``λ = 1/(4·d_in)`` and ``E = Dᵀ`` when ``tied_weights`` (else
the stored ``W_enc``), each attention layer, starting from ``r = x``:

- ``u = ReLU(λ·r E)``; the context of position ``t`` is ``u`` at ``t − 1`` (zeros at 0);
- ``p = ReLU(attention(context, u))``, ``d = p D``;
- ``s = ⟨d, r⟩ / (‖d‖ + 10⁻⁶)²`` per position; ``z_pred += s·p``; ``r −= s·d``.

Then ``h = λ·r E`` (``hook_sae_acts_pre``) and ``z_novel = ReLU(h)``, keeping only the
``kval_topk`` largest per position when ``sae_diff_type="topk"`` and ``kval_topk`` is set.
``encode`` returns ``z_novel`` (the interpretable codes) and ``decode`` decodes just those;
``forward`` reconstructs from both. The bias is added on decoding unless the weights are
tied and ``apply_b_dec_to_input`` is off.

Inputs are sequences: ``[..., T, d_in]``, positions along the second-to-last dimension
(a ``[d_in]`` input is one position).
"""

from __future__ import annotations

import torch
from torch import nn

from saecore import SAE
from saecore.errors import UnsafeFoldError
from saecore_sae_temporal.config import TemporalSAEConfig
from saecore_sae_temporal.context_attention import ContextAttention

PREDICTION_NORM_EPS = 1e-6


class TemporalSAE(SAE[TemporalSAEConfig]):
    """Inference temporal SAE (architecture ``temporal``); SAELens has no training recipe for it."""

    attn_layers: nn.ModuleList

    def initialize_weights(self) -> None:
        cfg = self.cfg
        self.W_dec = nn.Parameter(torch.randn(cfg.d_sae, cfg.d_in, dtype=self.dtype, device=self.device))
        self.b_dec = nn.Parameter(self._zeros(cfg.d_in))
        if not cfg.tied_weights:
            self.W_enc = nn.Parameter(torch.randn(cfg.d_in, cfg.d_sae, dtype=self.dtype, device=self.device))
        self.attn_layers = nn.ModuleList(
            ContextAttention(cfg.d_sae, cfg.n_heads, cfg.bottleneck_factor, self.device, self.dtype)
            for _ in range(cfg.n_attn_layers)
        )

    @property
    def input_scale(self) -> float:
        """``λ = 1/(4·d_in)``, applied to the encoder's input."""
        return 1 / (4 * self.cfg.d_in)

    def encoder_matrix(self) -> torch.Tensor:
        """``E [d_in, d_sae]``: the decoder's transpose when tied, else ``W_enc``."""
        return self.W_dec.T if self.cfg.tied_weights else self.W_enc

    # -- encoding ----------------------------------------------------------------------------
    def encode_with_predictions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_novel, z_pred)``, each ``[..., T, d_sae]``: sparse novel codes, codes predicted from context."""
        residual = self.process_sae_in(x)
        one_position = residual.ndim == 1
        sequences = residual.reshape(-1, 1 if one_position else residual.shape[-2], residual.shape[-1])
        z_novel, z_pred = self._encode_sequences(sequences)
        lead = residual.shape[:-1]
        return z_novel.reshape(*lead, -1), z_pred.reshape(*lead, -1)

    def _encode_sequences(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.encoder_matrix()
        lam = self.input_scale
        z_pred = residual.new_zeros(*residual.shape[:-1], self.cfg.d_sae)
        for attention in self.attn_layers:
            codes = torch.relu((residual * lam) @ encoder)
            context = torch.cat((torch.zeros_like(codes[:, :1]), codes[:, :-1]), dim=1)
            predicted = torch.relu(attention(context, codes))
            decoded = predicted @ self.W_dec
            step = (decoded * residual).sum(dim=-1, keepdim=True) / (
                decoded.norm(dim=-1, keepdim=True) + PREDICTION_NORM_EPS
            ).pow(2)
            z_pred = z_pred + predicted * step
            residual = residual - step * decoded
        hidden_pre = self.hook_sae_acts_pre((residual * lam) @ encoder)
        z_novel = torch.relu(hidden_pre)
        if self.cfg.sae_diff_type == "topk" and self.cfg.kval_topk is not None:
            kept = z_novel.topk(self.cfg.kval_topk, dim=-1).indices
            z_novel = torch.zeros_like(z_novel).scatter(-1, kept, z_novel.gather(-1, kept))
        return self.hook_sae_acts_post(z_novel), z_pred

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The novel codes ``z_novel``, the SAE's features."""
        return self.encode_with_predictions(x)[0]

    # -- decoding ----------------------------------------------------------------------------
    def _decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        recons = codes @ self.W_dec
        if not self.cfg.tied_weights or self.cfg.apply_b_dec_to_input:
            recons = recons + self.b_dec
        return self.finish_decode(recons)

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """Decode novel codes alone: the part of the input not predicted from context."""
        return self._decode_codes(feature_acts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The full reconstruction, from predicted plus novel codes (plus the error term if enabled)."""
        z_novel, z_pred = self.encode_with_predictions(x)
        sae_out = self._decode_codes(z_novel + z_pred)
        if self.use_error_term:
            with torch.no_grad(), self._hooks_bypassed():
                clean_novel, clean_pred = self.encode_with_predictions(x)
                clean = self._decode_codes(clean_novel + clean_pred)
            sae_out = sae_out + self.hook_sae_error(x.to(clean.dtype) - clean)
        return self.hook_sae_output(sae_out)

    # -- normalisation -------------------------------------------------------------------------
    def normalize_in(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.normalize_activations == "constant_scalar_rescale":
            return x * self.cfg.activation_normalization_factor
        return super().normalize_in(x)

    def normalize_out(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.normalize_activations == "constant_scalar_rescale":
            return x / self.cfg.activation_normalization_factor
        return super().normalize_out(x)

    # -- folding -------------------------------------------------------------------------------
    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        """Refused: the decoder rows also feed the predictions' projections and, when tied, the encoder."""
        raise UnsafeFoldError(
            "fold_W_dec_norm: not allowed for a temporal SAE, because its decoder also shapes the "
            "context predictions (and is its encoder when tied_weights=True), so rescaling rows changes the outputs"
        )

    @torch.no_grad()
    def fold_activation_norm_scaling_factor(self, scaling_factor: float) -> None:
        """Refused: the attention's softmax is not scale-invariant, so an input scale cannot move into the weights."""
        raise UnsafeFoldError(
            "fold_activation_norm_scaling_factor: not allowed for a temporal SAE, because its attention does not "
            "commute with scaling the input; use normalize_activations='constant_scalar_rescale' with "
            "activation_normalization_factor instead"
        )
