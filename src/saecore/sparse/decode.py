"""Decoding mostly-zero activations through their nonzeros.

A trained SAE fires a few dozen latents of thousands per input, so most of the dense
``[N, d_sae] @ [d_sae, d_in]`` decode multiplies zeros. Summing only the decoder rows
of the nonzero activations (one ``embedding_bag``) does ``d_sae / L0`` times less work,
but gathering rows is slower per multiply-add than a BLAS matmul, so it pays only when
the activations are sparse enough. ``SPARSE_DECODE_MAX_DENSITY`` (1/16) lies below the
CPU crossover at SAE sizes (docs/benchmarks.md, "Inference decode"; the benchmark is
``plugins/sae_topk/tests/bench_sparse_decode.py``).

The nonzero route is taken only when the activations want no gradient: theirs is
nonzero at their zero entries too, which needs the dense product. ``embedding_bag``
differentiates the decoder rows and the weights it sums, so gradients for ``W_dec``
and for a per-latent scale come through either route.

A training step that already holds its support (:class:`~saecore.sparse.support.Support`)
decodes through :func:`decode_support`, whose backward also runs over the support only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from saecore.sparse.rows import sum_decoder_rows
from saecore.sparse.support import Support

SPARSE_DECODE_MAX_DENSITY = 1 / 16


def decode_through_nonzeros(
    feature_acts: torch.Tensor, W_dec: torch.Tensor, latent_scale: torch.Tensor | None = None
) -> torch.Tensor:
    """``(feature_acts ⊙ latent_scale) @ W_dec`` as a sum of the decoder rows of the nonzero activations."""
    d_sae = feature_acts.shape[-1]
    flat = feature_acts.reshape(-1, d_sae)
    rows, latents = flat.nonzero(as_tuple=True)  # row-major, so each row's entries are contiguous
    weights = flat[rows, latents]
    if latent_scale is not None:
        weights = weights * latent_scale[latents]
    decoded = sum_decoder_rows(rows, latents, weights, flat.shape[0], W_dec)
    return decoded.reshape(*feature_acts.shape[:-1], W_dec.shape[-1])


def wants_sparse_decode(feature_acts: torch.Tensor, W_dec: torch.Tensor) -> bool:
    """Whether the nonzero route gives ``feature_acts @ W_dec`` faster, with nothing lost.

    Dense inputs of ``W_dec``'s dtype only: the dense product refuses a dtype mismatch and
    handles sparse layouts itself. The count of nonzeros is one cheap pass over the input.
    """
    wants_act_grad = torch.is_grad_enabled() and feature_acts.requires_grad
    if wants_act_grad or feature_acts.layout != torch.strided or feature_acts.dtype != W_dec.dtype:
        return False
    size = feature_acts.numel()
    return size > 0 and int(torch.count_nonzero(feature_acts)) <= SPARSE_DECODE_MAX_DENSITY * size


def decode_product(
    feature_acts: torch.Tensor, W_dec: torch.Tensor, latent_scale: torch.Tensor | None = None
) -> torch.Tensor:
    """``(feature_acts ⊙ latent_scale) @ W_dec``, through the nonzeros when that is faster.

    ``latent_scale`` (``[d_sae]``, or None for ones) multiplies each latent's activation
    before decoding: TopK's ``1 / ‖W_dec,i‖`` when it ranks by decoder-norm-scaled values.
    """
    if wants_sparse_decode(feature_acts, W_dec):
        return decode_through_nonzeros(feature_acts, W_dec, latent_scale)
    if latent_scale is not None:
        W_dec = W_dec * latent_scale.unsqueeze(-1)
    return feature_acts @ W_dec


def decode_sparse_coo(
    feature_acts: torch.Tensor, W_dec: torch.Tensor, latent_scale: torch.Tensor | None = None
) -> torch.Tensor:
    """``(feature_acts ⊙ latent_scale) @ W_dec`` for a sparse COO tensor ``[..., d_sae]``, dense ``[..., d_in]``."""
    coalesced = feature_acts.coalesce()
    coords = coalesced.indices()
    values = coalesced.values()
    lead = feature_acts.shape[:-1]
    latents = coords[-1]
    # Row-major flat row number; coalesced COO is sorted by it, as embedding_bag needs.
    rows = torch.zeros_like(latents)
    for dim, size in enumerate(lead):
        rows = rows * size + coords[dim]
    if latent_scale is not None:
        values = values * latent_scale[latents]
    decoded = sum_decoder_rows(rows, latents, values, math.prod(lead), W_dec)
    return decoded.reshape(*lead, W_dec.shape[-1])


class _SupportDecode(torch.autograd.Function):
    """``Σ_e values[e] · W_dec[latent(e)]`` per row; backward over the support only."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, W_dec: torch.Tensor, support: Support) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(values, W_dec)
        ctx.support = support
        return F.embedding_bag(support.latents, W_dec, support.starts, per_sample_weights=values, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        values, W_dec = ctx.saved_tensors
        support: Support = ctx.support
        grad_values = grad_W_dec = None
        if ctx.needs_input_grad[0]:
            grad_values = support.row_dots(grad, W_dec)
        if ctx.needs_input_grad[1]:
            grad_W_dec = support.sum_rows_by_latent(values, grad)
        return grad_values, grad_W_dec, None


def decode_support(values: torch.Tensor, support: Support, W_dec: torch.Tensor) -> torch.Tensor:
    """``f W_dec`` (no bias) for activations ``f`` given by their ``values`` at ``support``, ``[N, d_in]``.

    ``values`` is ``[nnz]``, or for a support of codes (:meth:`Support.of_codes`) the codes'
    ``[N, m]`` values. Its backward runs over the support only, and shares the support's
    order by latent with every other backward that sums rows over it.
    """
    return _SupportDecode.apply(values.reshape(-1).to(W_dec.dtype), W_dec, support)
