"""Selection by ranking scores: what TopK-like SAEs (TopK, BatchTopK) share.

They keep the largest ranking scores ``h' = h ⊙ ‖W_dec,i‖`` (``h' = h`` without
rescaling) and decode ``f ⊘ ‖W_dec,i‖``, so a decoder row's norm cannot sway the
selection. Saved for inference, the norms are folded into the encoder, so the saved SAE
ranks by plain ``h`` with the same result; without rescaling folding would change the
selection, and is refused.
"""

from __future__ import annotations

from typing import Any

import torch

from saecore.errors import UnsafeFoldError
from saecore.sae import SAE, fold_decoder_norms


def ranking_scores(sae: SAE[Any], x: torch.Tensor, rescale_by_decoder_norm: bool) -> torch.Tensor:
    """``h'``: the hooked pre-activations ``x_c W_enc + b_enc``, times the decoder norms when rescaling."""
    hidden_pre = sae.hook_sae_acts_pre(sae.process_sae_in(x) @ sae.W_enc + sae.b_enc)
    if rescale_by_decoder_norm:
        hidden_pre = hidden_pre * sae.W_dec.norm(dim=-1)
    return hidden_pre


def inverse_decoder_norms(sae: SAE[Any], rescale_by_decoder_norm: bool) -> torch.Tensor | None:
    """``1/‖W_dec,i‖`` (unclamped, as in SAELens), the decode's per-latent scale when rescaling; else None."""
    return 1 / sae.W_dec.norm(dim=-1) if rescale_by_decoder_norm else None


def check_fold_keeps_selection(sae: SAE[Any], rescale_by_decoder_norm: bool) -> None:
    """Raise :class:`~saecore.errors.UnsafeFoldError` unless folding the decoder norms keeps the selection."""
    if not rescale_by_decoder_norm:
        raise UnsafeFoldError(
            f"fold_W_dec_norm: not allowed for a {sae.cfg.architecture()} SAE with rescale_acts_by_decoder_norm=False, "
            "because scaling the encoder by the decoder norms changes which latents are kept; "
            "only SAEs with rescale_acts_by_decoder_norm=True can fold"
        )


def fold_decoder_norms_for_saving(state_dict: dict[str, torch.Tensor]) -> None:
    """Fold the decoder norms into the saved ``W_enc``, ``b_enc`` and ``W_dec`` (copies, not the live SAE's)."""
    fold_decoder_norms(state_dict["W_enc"], state_dict["b_enc"], state_dict["W_dec"])
