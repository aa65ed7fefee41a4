"""AuxK (Gao et al. 2024, App. B.1): dead latents learn to predict what the live ones miss.

Public so Matryoshka can apply it per nested level. Only the dead latents' columns are
touched: with few dead latents that is a small fraction of the SAE.
"""

from __future__ import annotations

import torch


def auxk_loss(
    scores: torch.Tensor,
    dead_mask: torch.Tensor,
    W_dec: torch.Tensor,
    residual: torch.Tensor,
    k_aux: int,
    rescale_acts_by_decoder_norm: bool,
) -> torch.Tensor | None:
    """``scale · mean_b ‖ê − e‖²``, or None when no latent is dead (before any coefficient).

    ``scores`` ``[..., n]`` are the ranking scores ``h'`` of ``n`` latents, ``dead_mask``
    ``[n]`` marks the dead ones, ``W_dec`` ``[n, d_in]`` are their decoder rows and
    ``residual`` ``[..., d_in]`` is ``stopgrad(x − x̂)``. With ``k_aux`` the target number
    (``d_in // 2``): ``scale = min(n_dead / k_aux, 1)``, ``k_aux ← min(k_aux, n_dead)``;
    ``a`` keeps the top-``k_aux`` raw scores (no ReLU) of dead latents per input, and
    ``ê = (a ⊘ ‖W_dec,i‖) W_dec`` (no bias; without rescaling ``ê = a W_dec``).
    """
    dead = dead_mask.nonzero().squeeze(1)
    n_dead = dead.numel()
    if n_dead == 0:
        return None
    scale = min(n_dead / k_aux, 1.0)
    dead_scores = scores.index_select(-1, dead)
    top = dead_scores.topk(min(k_aux, n_dead), dim=-1, sorted=False)
    acts = torch.zeros_like(dead_scores).scatter(-1, top.indices, top.values)
    dead_rows = W_dec.index_select(0, dead)
    if rescale_acts_by_decoder_norm:
        acts = acts / dead_rows.norm(dim=-1)
    recons = acts @ dead_rows
    return scale * (recons - residual).pow(2).sum(dim=-1).mean()
