"""The AuxK reconstruction ``ê = a W_dec`` of the training step, by the cheaper of two routes.

``a`` holds, per row, the raw pre-activations of the ``k_aux`` highest-ranked dead latents.
With ``k_aux = d_in // 2`` that is far denser than the main code, and within the block
of dead latents it is often a large fraction of the entries: then BLAS matmuls over the
``[N, n_dead]`` block beat gathering ``N·k_aux`` rows one by one. When dead latents far
outnumber ``k_aux`` the block is mostly zeros and the sparse route wins again.
"""

from __future__ import annotations

import torch

from saecore_sae_topk.sparse_codes import decode_codes, select_topk
from saecore_sae_topk.sparse_encoder import selected_preactivations

# Use the dense dead-latent block while it holds at most this many latents per AuxK
# latent kept (measured on CPU: at d_in=512 the two routes cost the same near 20).
DENSE_BLOCK_MAX_DEAD_PER_KEPT = 16


def auxk_reconstruction(
    x: torch.Tensor,
    sae_in: torch.Tensor,
    hidden_pre: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    b_dec: torch.Tensor,
    W_dec: torch.Tensor,
    norms: torch.Tensor | None,
    dead_latents: torch.Tensor,
    k_aux: int,
    subtract_b_dec: bool,
) -> torch.Tensor:
    """``ê [N, d_in]``, differentiable w.r.t. the parameters (not ``x``).

    ``x`` is the normalised batch, ``sae_in = x − b_dec`` (or ``x``), ``hidden_pre`` the
    ranking scores ``h'`` of every latent (no graph), ``norms`` the decoder norms they
    were scaled by or None.
    """
    scores, positions = select_topk(hidden_pre.index_select(1, dead_latents), k_aux)
    if dead_latents.numel() <= DENSE_BLOCK_MAX_DEAD_PER_KEPT * k_aux:
        return _dense_block_reconstruction(x, W_enc, b_enc, b_dec, W_dec, dead_latents, positions, subtract_b_dec)
    latents = dead_latents[positions]
    values = selected_preactivations(sae_in, W_enc, b_enc, b_dec, scores, latents, norms, subtract_b_dec)
    return decode_codes(values, latents, W_dec)


def _dense_block_reconstruction(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    b_dec: torch.Tensor,
    W_dec: torch.Tensor,
    dead_latents: torch.Tensor,
    positions: torch.Tensor,
    subtract_b_dec: bool,
) -> torch.Tensor:
    """Recompute ``h`` on the dead columns with autograd and decode through their rows.

    ``(x − b_dec) W + b = x W + (b − b_dec W)``: writing it the second way keeps ``x``
    out of the graph, so autograd never forms a gradient for the batch.
    """
    W_enc_dead = W_enc.index_select(1, dead_latents)
    bias = b_enc.index_select(0, dead_latents)
    if subtract_b_dec:
        bias = bias - b_dec @ W_enc_dead
    hidden_dead = torch.addmm(bias, x, W_enc_dead)
    kept = torch.zeros_like(hidden_dead, dtype=torch.bool).scatter_(1, positions, True)
    return (hidden_dead * kept) @ W_dec.index_select(0, dead_latents)
