"""The TopK training encoder: a dense forward without autograd, a sparse backward.

Plain autograd through ``topk`` scatters the gradient of the kept values into a dense
``[N, d_sae]`` tensor and multiplies it by the inputs: a second encoder-sized matmul,
almost all of it on zeros. Here the encoder scores are computed once without a graph,
and ``selected_preactivations`` re-enters autograd only at the kept (row, latent) pairs:
its backward sums, for each latent, the input rows that kept it (one ``embedding_bag``
over entries sorted by latent), ``O(N·k·d_in)`` instead of ``O(N·d_sae·d_in)``. No
gradient w.r.t. the input is computed: a training batch never needs one.

With decoder-norm rescaling the norms only decide which latents are kept: the decoder
divides them out again (``relu(h_i·n_i)/n_i = relu(h_i)``), so the loss has no gradient
through them, and the differentiable values are the unscaled ``h``.
"""

from __future__ import annotations

from typing import Any

import torch

from saecore_sae_topk.sparse_codes import CodeEntries

# With decoder-norm rescaling the encoder runs over column blocks of at least this many
# latents, each with its own scaled copy of W_enc's columns: one scaled copy of the whole
# W_enc would add d_in·d_sae floats to the step's peak (72 MiB at d_in 768, d_sae 24576;
# as much as the pre-activations themselves when d_in equals the batch). The blocks write
# into the output in place, so the scores are bitwise those of one product, and cost about
# 1% of the product's time (measured at d_in 768, d_sae 24576, blocks of 4096).
SCALED_ENCODER_BLOCK_COLUMNS = 4096


@torch.no_grad()
def encoder_scores(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    b_dec: torch.Tensor,
    norms: torch.Tensor | None,
    subtract_b_dec: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sae_in, h')`` of a batch, without a graph: ``h' = ((x − b_dec) W_enc + b_enc) ⊙ n``."""
    sae_in = x - b_dec if subtract_b_dec else x
    if norms is None:
        return sae_in, torch.addmm(b_enc, sae_in, W_enc)
    # Scaling the d_in×d_sae weights is far cheaper than scaling the N×d_sae output.
    d_sae = W_enc.shape[1]
    if d_sae <= SCALED_ENCODER_BLOCK_COLUMNS or torch.is_autocast_enabled(sae_in.device.type):
        return sae_in, torch.addmm(b_enc * norms, sae_in, W_enc * norms)
    scores = torch.empty(sae_in.shape[0], d_sae, dtype=W_enc.dtype, device=W_enc.device)
    for start in range(0, d_sae, SCALED_ENCODER_BLOCK_COLUMNS):
        block = slice(start, start + SCALED_ENCODER_BLOCK_COLUMNS)
        torch.addmm(b_enc[block] * norms[block], sae_in, W_enc[:, block] * norms[block], out=scores[:, block])
    return sae_in, scores


class _SelectedPreactivations(torch.autograd.Function):
    """``h[n, latents[n, j]]`` as a differentiable function of ``W_enc``, ``b_enc`` and ``b_dec``.

    The forward only rescales scores already computed; the backward is the sparse part.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        sae_in: torch.Tensor,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor,
        b_dec: torch.Tensor,
        scores: torch.Tensor,
        latents: torch.Tensor,
        norms: torch.Tensor | None,
        subtract_b_dec: bool,
        entries: CodeEntries,
    ) -> torch.Tensor:
        ctx.save_for_backward(sae_in, W_enc, latents)
        ctx.subtract_b_dec = subtract_b_dec
        ctx.entries = entries
        return scores.clone() if norms is None else scores / norms[latents]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        sae_in, W_enc, latents = ctx.saved_tensors
        d_sae = W_enc.shape[1]
        grad = grad.to(W_enc.dtype)  # under autocast the scores, hence this gradient, may be bf16
        grad_b_enc = grad.new_zeros(d_sae).index_add_(0, latents.reshape(-1), grad.reshape(-1))
        grad_W_enc = None
        if ctx.needs_input_grad[1]:
            grad_W_enc = ctx.entries.sum_rows(grad, sae_in).T.contiguous()
        grad_b_dec = None
        if ctx.subtract_b_dec and ctx.needs_input_grad[3]:
            # Σ_n ∂L/∂sae_in[n] = W_enc · Σ_n ∂L/∂h[n] = W_enc · grad_b_enc, and sae_in = x − b_dec.
            grad_b_dec = -(W_enc @ grad_b_enc)
        return (None, grad_W_enc, grad_b_enc if ctx.needs_input_grad[2] else None, grad_b_dec,
                None, None, None, None, None)


def selected_preactivations(
    sae_in: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    b_dec: torch.Tensor,
    scores: torch.Tensor,
    latents: torch.Tensor,
    norms: torch.Tensor | None,
    subtract_b_dec: bool,
    entries: CodeEntries | None = None,
) -> torch.Tensor:
    """The unscaled pre-activations ``h`` at ``latents [N, m]``, with a sparse backward.

    ``scores`` are the ranking scores ``h'`` at those latents (from ``encoder_scores``),
    ``norms`` the decoder norms they were scaled by (or None), and ``sae_in`` the
    encoder input ``x − b_dec``. ``entries`` (of these ``latents``) lets the encoder's gradient share
    its sort with the decoder's.
    """
    if entries is None:
        entries = CodeEntries(latents, W_enc.shape[1])
    return _SelectedPreactivations.apply(sae_in, W_enc, b_enc, b_dec, scores, latents, norms, subtract_b_dec, entries)
