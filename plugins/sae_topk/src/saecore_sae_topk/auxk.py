"""The AuxK reconstruction ``ê = a W_dec`` of the training step, by the cheaper of two routes.

``a`` holds, per row, the raw pre-activations of the ``k_aux`` highest-ranked dead latents.
With ``k_aux = d_in // 2`` that is far denser than the main code, and within the block
of dead latents it is often a large fraction of the entries: then BLAS matmuls over the
``[N, n_dead]`` block beat gathering ``N·k_aux`` rows one by one. When dead latents far
outnumber ``k_aux`` the block is mostly zeros and the sparse route wins again. Either
way the forward reuses the ranking scores; only gradients are computed anew.
"""

from __future__ import annotations

from typing import Any

import torch

from saecore_sae_topk.sparse_codes import CodeEntries, decode_codes, select_topk
from saecore_sae_topk.sparse_encoder import selected_preactivations

# Use the dense dead-latent block while it holds at most this many latents per AuxK
# latent kept: on CPU the two routes cost the same near 6.4 dead latents per kept one, and the
# sparse route wins above it (docs/benchmarks.md, "AuxK's route").
DENSE_BLOCK_MAX_DEAD_PER_KEPT = 6


def auxk_reconstruction(
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
    """``ê [N, d_in]``, differentiable w.r.t. the parameters (not the batch).

    ``sae_in`` is the encoder input ``x − b_dec`` (or the normalised batch ``x``),
    ``hidden_pre`` the ranking scores ``h'`` of every latent (no graph), ``norms`` the
    decoder norms they were scaled by or None.
    """
    block = hidden_pre.index_select(1, dead_latents)
    scores, positions = select_topk(block, k_aux)
    if dead_latents.numel() <= DENSE_BLOCK_MAX_DEAD_PER_KEPT * k_aux:
        block_norms = None if norms is None else norms.index_select(0, dead_latents)
        hidden_dead = _DeadBlockPreactivations.apply(
            sae_in, W_enc, b_enc, b_dec, block, dead_latents, block_norms, subtract_b_dec
        )
        kept = torch.zeros_like(hidden_dead, dtype=torch.bool).scatter_(1, positions, True)
        return (hidden_dead * kept) @ W_dec.index_select(0, dead_latents)
    latents = dead_latents[positions]
    entries = CodeEntries(latents, W_dec.shape[0])  # one sort by latent for both weight gradients
    values = selected_preactivations(sae_in, W_enc, b_enc, b_dec, scores, latents, norms, subtract_b_dec, entries)
    return decode_codes(values, latents, W_dec, entries)


class _DeadBlockPreactivations(torch.autograd.Function):
    """``h`` on every dead column ``[N, n_dead]``, read from the scores already computed.

    Recomputing ``x W_enc`` on the dead columns under autograd would repeat a matmul the
    ranking already did; only the backward needs BLAS: ``∂W_enc[:, dead] = sae_inᵀ g``.
    No gradient w.r.t. the input is formed.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        sae_in: torch.Tensor,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor,
        b_dec: torch.Tensor,
        block_scores: torch.Tensor,
        dead_latents: torch.Tensor,
        block_norms: torch.Tensor | None,
        subtract_b_dec: bool,
    ) -> torch.Tensor:
        ctx.save_for_backward(sae_in, W_enc, dead_latents)
        ctx.subtract_b_dec = subtract_b_dec
        return block_scores.clone() if block_norms is None else block_scores / block_norms

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        sae_in, W_enc, dead_latents = ctx.saved_tensors
        grad = grad.to(W_enc.dtype)  # under autocast the block, hence this gradient, may be bf16
        grad_block_bias = grad.sum(0)
        grad_W_enc = grad_b_enc = grad_b_dec = None
        if ctx.needs_input_grad[1]:
            grad_W_enc = torch.zeros_like(W_enc).index_copy_(1, dead_latents, sae_in.T @ grad)
        if ctx.needs_input_grad[2]:
            grad_b_enc = grad.new_zeros(W_enc.shape[1]).index_copy_(0, dead_latents, grad_block_bias)
        if ctx.subtract_b_dec and ctx.needs_input_grad[3]:
            # sae_in = x − b_dec enters every dead column through W_enc, as in the sparse route.
            grad_b_dec = -(W_enc.index_select(1, dead_latents) @ grad_block_bias)
        return None, grad_W_enc, grad_b_enc, grad_b_dec, None, None, None, None
