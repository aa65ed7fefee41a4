"""Sparse codes: TopK activations held as ``(values [..., k], indices [..., k])``.

Decoding a code reads only the k decoder rows it names (one ``embedding_bag`` sum),
which is what makes TopK cheap: the dense ``[N, d_sae] @ [d_sae, d_in]`` product does
``d_sae / k`` times more work, nearly all of it on zeros. The sums are the core's
(``saecore.sparse``); this module brings TopK's compiled kernels to them.
"""

from __future__ import annotations

import torch

from saecore.sparse import Support, decode_product, decode_sparse_coo, decode_support
from saecore_sae_topk.code_dots import code_dots, code_dots_applies
from saecore_sae_topk.row_topk import row_topk


def select_topk(hidden_pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of the last dimension (unsorted: order does not matter to a sum)."""
    return row_topk(hidden_pre, k)


def kernel_code_row_dots(grad: torch.Tensor, W_dec: torch.Tensor, latents: torch.Tensor) -> torch.Tensor | None:
    """The compiled ``_code_dots`` kernel's ``[N, k]`` row dots where it applies, else None."""
    return code_dots(grad, W_dec, latents) if code_dots_applies(grad, W_dec, latents) else None


def code_support(indices: torch.Tensor, d_sae: int) -> Support:
    """The entries of codes ``indices [..., k]``, with the compiled kernel for the decode's value gradient.

    A training step sums rows by latent twice over the same codes (the decoder's and the
    encoder's weight gradients); sharing one support between them sorts the entries once.
    """
    return Support.of_codes(indices, d_sae, kernel_code_row_dots)


def decode_codes(
    values: torch.Tensor, indices: torch.Tensor, W_dec: torch.Tensor, support: Support | None = None
) -> torch.Tensor:
    """``Σ_j values[..., j] · W_dec[indices[..., j]]``, shape ``[..., d_in]``; no bias.

    ``support`` (of these ``indices``) lets the decoder's gradient share its sort with another backward.
    """
    if support is None:
        support = code_support(indices, W_dec.shape[0])
    summed = decode_support(values, support, W_dec)
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


def decode_dense_activations(
    feature_acts: torch.Tensor, W_dec: torch.Tensor, inv_norms: torch.Tensor | None
) -> torch.Tensor:
    """``(feature_acts ⊙ inv_norms) @ W_dec`` for dense activations a user hands to ``decode``.

    Anything a TopK encoder produced is mostly zero, so the core's decode goes through
    its nonzeros. The activations are cast to ``W_dec``'s dtype first: TopK's ``decode``
    takes any float dtype, and the nonzero route needs the decoder's.
    """
    return decode_product(feature_acts.to(W_dec.dtype), W_dec, inv_norms)


def decode_sparse_activations(
    feature_acts: torch.Tensor, W_dec: torch.Tensor, inv_norms: torch.Tensor | None
) -> torch.Tensor:
    """``(feature_acts ⊙ inv_norms) @ W_dec`` for a sparse COO tensor ``[..., d_sae]``."""
    return decode_sparse_coo(feature_acts, W_dec, inv_norms)
