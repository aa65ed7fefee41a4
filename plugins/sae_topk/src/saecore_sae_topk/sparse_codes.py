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

from saecore.sparse_decode import decode_product, decoder_row_dots, latent_runs, sum_decoder_rows
from saecore.sparse_decode import sum_rows_by_latent as core_sum_rows_by_latent
from saecore_sae_topk.code_dots import code_dots, code_dots_applies
from saecore_sae_topk.row_topk import row_topk


def select_topk(hidden_pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of the last dimension (unsorted: order does not matter to a sum)."""
    return row_topk(hidden_pre, k)


class CodeEntries:
    """The entries of codes ``latents [N, m]``: their rows, and their order by latent, each formed once.

    A training step sums rows by latent twice over the same codes (the decoder's and the
    encoder's weight gradients); sharing one object between them sorts the entries once.
    """

    def __init__(self, latents: torch.Tensor, d_sae: int) -> None:
        self.latents = latents
        self.d_sae = d_sae
        self._runs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._entry_rows: torch.Tensor | None = None

    @property
    def entry_rows(self) -> torch.Tensor:
        """The row of each flat entry (``e // m``)."""
        if self._entry_rows is None:
            n_entries, per_row = self.latents.numel(), self.latents.shape[-1]
            self._entry_rows = torch.arange(n_entries, device=self.latents.device) // per_row
        return self._entry_rows

    @property
    def runs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(order, starts)``: the entries sorted by latent, and where each latent's run begins."""
        if self._runs is None:
            self._runs = latent_runs(self.latents.reshape(-1), self.d_sae)
        return self._runs

    def sum_rows(self, weights: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``out[j] = Σ_{e: latents[e]=j} weights[e] · rows[e // m]``, shape ``[d_sae, rows.shape[1]]``.

        The transpose of decoding (``saecore.sparse_decode.sum_rows_by_latent``).
        """
        return core_sum_rows_by_latent(weights.reshape(-1), self.latents.reshape(-1), self.entry_rows, rows,
                                       self.d_sae, self.runs)

    def row_dots(self, grad: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
        """``out[n, j] = grad[n] · W_dec[latents[n, j]]``: decoding's gradient w.r.t. each value, ``[N, m]``."""
        if code_dots_applies(grad, W_dec, self.latents):
            return code_dots(grad, W_dec, self.latents)
        per_row = self.latents.shape[-1]
        starts = torch.arange(0, self.latents.numel(), per_row, device=self.latents.device)
        dots = decoder_row_dots(grad, W_dec, self.latents.reshape(-1), starts, self.entry_rows)
        return dots.reshape(self.latents.shape)


class _DecodeCodes(torch.autograd.Function):
    """``embedding_bag`` decoding with a sorted, per-latent backward for ``W_dec``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, values: torch.Tensor, indices: torch.Tensor, W_dec: torch.Tensor, entries: CodeEntries
    ) -> torch.Tensor:
        ctx.save_for_backward(values, W_dec)
        ctx.entries = entries  # holds the indices
        return F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        values, W_dec = ctx.saved_tensors
        grad_values = grad_W_dec = None
        if ctx.needs_input_grad[0]:
            grad_values = ctx.entries.row_dots(grad, W_dec)
        if ctx.needs_input_grad[2]:
            grad_W_dec = ctx.entries.sum_rows(values, grad)
        return grad_values, None, grad_W_dec, None


def decode_codes(
    values: torch.Tensor, indices: torch.Tensor, W_dec: torch.Tensor, entries: CodeEntries | None = None
) -> torch.Tensor:
    """``Σ_j values[..., j] · W_dec[indices[..., j]]``, shape ``[..., d_in]``; no bias.

    ``entries`` (of these ``indices``) lets the decoder's gradient share its sort with another backward.
    """
    k = indices.shape[-1]
    flat_indices = indices.reshape(-1, k)
    if entries is None:
        entries = CodeEntries(flat_indices, W_dec.shape[0])
    summed = _DecodeCodes.apply(values.reshape(-1, k).to(W_dec.dtype), flat_indices, W_dec, entries)
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
    decoded = sum_decoder_rows(rows, cols, values, math.prod(lead), W_dec)
    return decoded.reshape(*lead, W_dec.shape[-1])
