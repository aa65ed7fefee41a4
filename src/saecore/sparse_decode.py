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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SPARSE_DECODE_MAX_DENSITY = 1 / 16


def sum_decoder_rows(
    rows: torch.Tensor, latents: torch.Tensor, weights: torch.Tensor, n_rows: int, W_dec: torch.Tensor
) -> torch.Tensor:
    """``out[r] = Σ_{e: rows[e] = r} weights[e] · W_dec[latents[e]]``, shape ``[n_rows, d_in]``.

    The entries must be sorted by ``rows``, so that each output row's are one contiguous
    bag; a row with no entry decodes to zero. Any sparse layout reduces to this.
    """
    starts = torch.searchsorted(rows, torch.arange(n_rows, device=rows.device))
    return F.embedding_bag(latents, W_dec, starts, per_sample_weights=weights.to(W_dec.dtype), mode="sum")


# embedding_bag's mode code for "sum".
_EMBEDDING_BAG_SUM = 0


def decoder_row_dots(
    grad: torch.Tensor, W_dec: torch.Tensor, latents: torch.Tensor, starts: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """``out[e] = grad[rows[e]] · W_dec[latents[e]]``: the gradient of a sparse decode w.r.t. each entry's value.

    The entries are sorted by row (``rows``), and ``starts`` says where each row's begin,
    as :func:`sum_decoder_rows` takes them. embedding_bag's own kernel for its
    per-sample-weight gradient is this sampled product, and it forms no gathered copies.
    It is called directly rather than through autograd, which would first run the decoder
    forward again to build a graph.
    """
    return torch.ops.aten._embedding_bag_per_sample_weights_backward(
        grad.contiguous(), W_dec, latents, starts, rows, _EMBEDDING_BAG_SUM
    )


def latent_runs(latents: torch.Tensor, d_sae: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order, starts)``: the entries sorted by latent, and where each latent's run begins.

    A stable sort: on CPU it is a radix sort for integer keys, several times faster than
    ``argsort``'s comparison sort, and its order (so each latent's summation order) does
    not depend on the thread count.
    """
    order = torch.sort(latents, stable=True).indices
    counts = torch.bincount(latents, minlength=d_sae)
    return order, counts.cumsum(0) - counts


def sum_rows_by_latent(
    weights: torch.Tensor,
    latents: torch.Tensor,
    source_rows: torch.Tensor,
    rows: torch.Tensor,
    d_sae: int,
    runs: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``out[i] = Σ_{e: latents[e] = i} weights[e] · rows[source_rows[e]]``, shape ``[d_sae, rows.shape[1]]``.

    The transpose of :func:`sum_decoder_rows`: the gradient of the decoder (or encoder)
    rows that sparse codes used. With the entries sorted by latent (``runs``, from
    :func:`latent_runs`, computed here if not given) each latent's sum is one contiguous
    bag of ``embedding_bag``: no ``[entries, d_in]`` products are formed, and it is
    several times faster than ``index_add_`` of gathered rows on CPU.
    """
    order, starts = runs if runs is not None else latent_runs(latents, d_sae)
    return F.embedding_bag(
        source_rows[order], rows, starts, per_sample_weights=weights[order].to(rows.dtype), mode="sum"
    )


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
