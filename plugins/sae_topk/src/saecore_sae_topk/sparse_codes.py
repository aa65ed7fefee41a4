"""Sparse codes: TopK activations held as ``(values [..., k], indices [..., k])``.

Decoding a code reads only the k decoder rows it names (one ``embedding_bag`` sum),
which is what makes TopK cheap: the dense ``[N, d_sae] @ [d_sae, d_in]`` product does
``d_sae / k`` times more work, nearly all of it on zeros.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

# A dense activation tensor is decoded through its nonzeros only when at most this
# fraction of its entries is nonzero; above it a BLAS matmul is faster than gathering.
# Measured on CPU (tests/bench_sparse_decode.py, N=4096): the routes cost the same near
# density 1/6 at d_in=512, d_sae=4096 and near 1/12 at d_in=768, d_sae=24576.
SPARSE_DECODE_MAX_DENSITY = 1 / 16


def select_topk(hidden_pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of the last dimension (unsorted: order does not matter to a sum)."""
    values, indices = hidden_pre.topk(k, dim=-1, sorted=False)
    return values, indices


def sum_rows_by_latent(
    weights: torch.Tensor, latents: torch.Tensor, rows: torch.Tensor, d_sae: int
) -> torch.Tensor:
    """``out[j] = Σ_{e: latents[e]=j} weights[e] · rows[e // m]`` for ``latents`` of shape ``[N, m]``.

    The transpose of decoding: the gradient of the decoder (or encoder) rows a code
    used. Sorting the entries by latent turns the scatter-add into ``d_sae`` contiguous
    bags, which ``embedding_bag`` sums without materialising ``[N·m, d_in]`` products
    (several times faster than ``embedding_bag``'s own weight gradient on CPU).
    """
    per_row = latents.shape[-1]
    flat_latents = latents.reshape(-1)
    order = torch.argsort(flat_latents)
    counts = torch.bincount(flat_latents, minlength=d_sae)
    offsets = counts.cumsum(0) - counts
    source_rows = torch.div(order, per_row, rounding_mode="floor")
    return F.embedding_bag(
        source_rows, rows, offsets, per_sample_weights=weights.reshape(-1)[order].to(rows.dtype), mode="sum"
    )


class _DecodeCodes(torch.autograd.Function):
    """``embedding_bag`` decoding with a sorted, per-latent backward for ``W_dec``."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, indices: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(values, indices, W_dec)
        return F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        values, indices, W_dec = ctx.saved_tensors
        grad_values = grad_W_dec = None
        if ctx.needs_input_grad[0]:
            # d out[n] / d values[n, j] = W_dec[indices[n, j]]: embedding_bag's own kernel
            # for that gradient is the fastest dot-product-by-gather available.
            with torch.enable_grad():
                leaf = values.detach().requires_grad_(True)
                out = F.embedding_bag(indices, W_dec.detach(), per_sample_weights=leaf, mode="sum")
            (grad_values,) = torch.autograd.grad(out, leaf, grad)
        if ctx.needs_input_grad[2]:
            grad_W_dec = sum_rows_by_latent(values, indices, grad, W_dec.shape[0])
        return grad_values, None, grad_W_dec


def decode_codes(values: torch.Tensor, indices: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """``Σ_j values[..., j] · W_dec[indices[..., j]]``, shape ``[..., d_in]``; no bias."""
    k = indices.shape[-1]
    summed = _DecodeCodes.apply(values.reshape(-1, k).to(W_dec.dtype), indices.reshape(-1, k), W_dec)
    return summed.reshape(*indices.shape[:-1], W_dec.shape[-1])


def scatter_codes(values: torch.Tensor, indices: torch.Tensor, d_sae: int) -> torch.Tensor:
    """The dense ``[..., d_sae]`` tensor of a code: zeros except at its indices."""
    dense = values.new_zeros(*values.shape[:-1], d_sae)
    return dense.scatter_(-1, indices, values)


def codes_to_sparse_coo(values: torch.Tensor, indices: torch.Tensor, d_sae: int) -> torch.Tensor:
    """The same activations as a coalesced sparse COO tensor of shape ``[..., d_sae]``."""
    lead = values.shape[:-1]
    k = indices.shape[-1]
    sorted_indices, order = indices.reshape(-1, k).sort(dim=-1)
    sorted_values = values.reshape(-1, k).gather(-1, order)
    n_rows = sorted_indices.shape[0]
    rows = torch.arange(n_rows, device=values.device).repeat_interleave(k)
    if len(lead) == 1:
        # The flat row number is the coordinate: unravel_index would only copy it, through
        # several kernels that each cost a thread wake-up on a busy CPU.
        lead_coords: tuple[torch.Tensor, ...] = (rows,)
    else:
        lead_coords = torch.unravel_index(rows, lead) if len(lead) > 0 else ()
    coords = torch.stack([*lead_coords, sorted_indices.reshape(-1)])
    return torch.sparse_coo_tensor(
        coords, sorted_values.reshape(-1), (*lead, d_sae), is_coalesced=True, check_invariants=False
    )


def _decode_ragged(
    rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n_rows: int, W_dec: torch.Tensor
) -> torch.Tensor:
    """Decode entries given as (row, col, value) triples sorted by row; empty rows decode to 0."""
    offsets = torch.searchsorted(rows, torch.arange(n_rows, device=rows.device))
    return F.embedding_bag(cols, W_dec, offsets, per_sample_weights=values.to(W_dec.dtype), mode="sum")


def decode_dense_activations(
    feature_acts: torch.Tensor, W_dec: torch.Tensor, inv_norms: torch.Tensor | None
) -> torch.Tensor:
    """``(feature_acts ⊙ inv_norms) @ W_dec`` for activations a user hands to ``decode``.

    Mostly zero inputs (anything a TopK encoder produced) are decoded through their
    nonzeros. A gradient with respect to the activations needs the dense product, since
    it is nonzero at the zero entries too.
    """
    d_sae = feature_acts.shape[-1]
    wants_act_grad = feature_acts.requires_grad and torch.is_grad_enabled()
    flat = feature_acts.reshape(-1, d_sae)
    if wants_act_grad or int(torch.count_nonzero(flat)) > SPARSE_DECODE_MAX_DENSITY * flat.numel():
        weights = W_dec if inv_norms is None else W_dec * inv_norms.unsqueeze(1)
        return feature_acts.to(W_dec.dtype) @ weights
    positions = flat.reshape(-1).nonzero().squeeze(1)
    rows = torch.div(positions, d_sae, rounding_mode="floor")
    cols = positions - rows * d_sae
    values = flat.reshape(-1)[positions]
    if inv_norms is not None:
        values = values * inv_norms[cols]
    decoded = _decode_ragged(rows, cols, values, flat.shape[0], W_dec)
    return decoded.reshape(*feature_acts.shape[:-1], W_dec.shape[-1])


def decode_sparse_activations(
    feature_acts: torch.Tensor, W_dec: torch.Tensor, inv_norms: torch.Tensor | None
) -> torch.Tensor:
    """``(feature_acts ⊙ inv_norms) @ W_dec`` for a sparse COO tensor ``[..., d_sae]``."""
    coalesced = feature_acts.coalesce()
    coords = coalesced.indices()
    values = coalesced.values()
    lead = feature_acts.shape[:-1]
    cols = coords[-1]
    # Row-major flat row number; coalesced COO is sorted by it, as embedding_bag needs.
    rows = torch.zeros_like(cols)
    for dim, size in enumerate(lead):
        rows = rows * size + coords[dim]
    if inv_norms is not None:
        values = values * inv_norms[cols]
    decoded = _decode_ragged(rows, cols, values, math.prod(lead), W_dec)
    return decoded.reshape(*lead, W_dec.shape[-1])
