"""The TopK training encoder's scores: a dense forward without autograd.

Plain autograd through ``topk`` scatters the gradient of the kept values into a dense
``[N, d_sae]`` tensor and multiplies it by the inputs: a second encoder-sized matmul,
almost all of it on zeros. Here the encoder scores are computed once without a graph,
and only the kept (row, latent) pairs re-enter autograd
(``saecore.sparse.preactivations_at_support``), whose backward is ``O(N·k·d_in)``
instead of ``O(N·d_sae·d_in)``.

With decoder-norm rescaling the norms only decide which latents are kept: the decoder
divides them out again (``relu(h_i·n_i)/n_i = relu(h_i)``), so the loss has no gradient
through them, and the differentiable values are the unscaled ``h``.
"""

from __future__ import annotations

import torch

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
    with_ones = _with_ones_column(sae_in) if _bias_in_product(sae_in) else None
    if norms is None and with_ones is None:
        return sae_in, torch.addmm(b_enc, sae_in, W_enc)

    def block_scores(block: slice, out: torch.Tensor | None = None) -> torch.Tensor:
        """The scores of latents ``block``, from a scaled (or bias-stacked) copy of their weights only."""
        # Scaling the d_in×d_sae weights is far cheaper than scaling the N×d_sae output.
        weights, bias = W_enc[:, block], b_enc[block]
        if with_ones is None:
            assert norms is not None
            return torch.addmm(bias * norms[block], sae_in, weights * norms[block], out=out)
        stacked = torch.empty(weights.shape[0] + 1, weights.shape[1], dtype=weights.dtype, device=weights.device)
        if norms is None:
            stacked[:-1].copy_(weights)
            stacked[-1].copy_(bias)
        else:
            torch.mul(weights, norms[block], out=stacked[:-1])
            torch.mul(bias, norms[block], out=stacked[-1])
        return torch.mm(with_ones, stacked, out=out)

    d_sae = W_enc.shape[1]
    if d_sae <= SCALED_ENCODER_BLOCK_COLUMNS or torch.is_autocast_enabled(sae_in.device.type):
        return sae_in, block_scores(slice(None))
    scores = torch.empty(sae_in.shape[0], d_sae, dtype=W_enc.dtype, device=W_enc.device)
    for start in range(0, d_sae, SCALED_ENCODER_BLOCK_COLUMNS):
        block = slice(start, start + SCALED_ENCODER_BLOCK_COLUMNS)
        block_scores(block, out=scores[:, block])
    return sae_in, scores


def _bias_in_product(sae_in: torch.Tensor) -> bool:
    """Whether the bias rides in the matmul as a row of weights against a column of ones (CPU float32, no autocast).

    ``addmm`` first copies the broadcast bias into the whole ``[N, d_sae]`` output, then
    accumulates onto it: two extra passes over the step's largest tensor. One more row of
    weights against a column of ones adds ``1/d_in`` to the product instead (at 512 × 4096,
    batch 4096, float32, one thread: 114 against 121 ms). On GPUs an odd inner dimension
    would cost more than it saves, and under autocast the product is bf16.
    """
    return (
        sae_in.device.type == "cpu"
        and sae_in.dtype == torch.float32
        and sae_in.dim() == 2
        and not torch.is_autocast_enabled("cpu")
    )


def _with_ones_column(sae_in: torch.Tensor) -> torch.Tensor:
    """``[sae_in | 1]``, ``[N, d_in + 1]``."""
    with_ones = torch.empty(sae_in.shape[0], sae_in.shape[1] + 1, dtype=sae_in.dtype, device=sae_in.device)
    with_ones[:, :-1].copy_(sae_in)
    with_ones[:, -1] = 1
    return with_ones
