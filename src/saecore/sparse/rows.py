"""Row sums over sparse entries: the ``embedding_bag`` kernels every sparse product reduces to.

A sparse decode sums decoder rows per input; its gradients are a dot product per entry
and a sum of rows per latent. ``embedding_bag`` does each without forming the
``[entries, d_in]`` products, and several times faster than ``index_add_`` of gathered
rows on CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def latent_firing_counts(latents: torch.Tensor, d_sae: int, active: torch.Tensor | None = None) -> torch.Tensor:
    """``out[i]`` = how many of the entries ``latents`` (any shape) name latent ``i`` and, if given, ``active`` holds.

    Off the CPU this is a scatter of ones, never ``bincount`` or a boolean index: on CUDA
    both read a value back to the host (bincount its input's maximum, the index its count),
    which would stall every training step. On the CPU ``bincount`` counts unmasked entries
    faster, and the scatter masked ones.
    """
    flat = latents.reshape(-1)
    if active is None and flat.device.type == "cpu":
        return torch.bincount(flat, minlength=d_sae)
    ones = torch.ones_like(flat) if active is None else active.reshape(-1).to(flat.dtype)
    return torch.zeros(d_sae, dtype=flat.dtype, device=flat.device).scatter_add_(0, flat, ones)


def latent_runs(latents: torch.Tensor, d_sae: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order, starts)``: the entries sorted by latent, and where each latent's run begins.

    A stable sort: on CPU it is a radix sort for integer keys, several times faster than
    ``argsort``'s comparison sort, and its order (so each latent's summation order) does
    not depend on the thread count.
    """
    order = torch.sort(latents, stable=True).indices
    counts = latent_firing_counts(latents, d_sae)
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
