"""Matryoshka's level decodes over one support, with a single decoder gradient for all levels.

Each level ``[start, stop)`` of the latents decodes only its own kept entries. As separate
support decodes, every level's backward would form a whole ``[d_sae, d_in]`` decoder
gradient (zero outside its rows) and autograd would add them up: ``L`` decoder-sized
outputs and ``L − 1`` additions. Here each level sums its entries' rows into its own
``[stop − start, d_in]`` block of one gradient (the levels tile the latents).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from saecore.sparse import Support


class _LevelDecodes(torch.autograd.Function):
    """``(d_1, …, d_L)``: level ``l``'s decode ``Σ_{e ∈ l} values[e] · W_dec[latent(e)]``, ``[N, d_in]`` each."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, values: torch.Tensor, W_dec: torch.Tensor, support: Support, widths: list[int]
    ) -> tuple[torch.Tensor, ...]:
        levels, decodes, start = [], [], 0
        for width in widths:
            part, entries = support.of_latent_range(start, width)
            levels.append((start, width, part, entries))
            decodes.append(F.embedding_bag(part.latents, W_dec, part.starts, per_sample_weights=values[entries],
                                           mode="sum"))
            start = width
        ctx.save_for_backward(values, W_dec)
        ctx.levels = levels
        return tuple(decodes)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        values, W_dec = ctx.saved_tensors
        grad_values = torch.empty_like(values) if ctx.needs_input_grad[0] else None
        grad_W_dec = torch.empty_like(W_dec) if ctx.needs_input_grad[1] else None
        for (start, stop, part, entries), grad in zip(ctx.levels, grads):
            if grad_values is not None:
                grad_values[entries] = part.row_dots(grad, W_dec)
            if grad_W_dec is not None:
                order, latent_starts = part.by_latent()
                level_values = values[entries]
                grad_W_dec[start:stop] = F.embedding_bag(part.rows[order], grad, latent_starts[start:stop],
                                                         per_sample_weights=level_values[order], mode="sum")
        return grad_values, grad_W_dec, None, None


def level_decodes(values: torch.Tensor, support: Support, W_dec: torch.Tensor, widths: list[int]) -> list[torch.Tensor]:
    """Each level's decode (no bias) of activations ``values [nnz]`` at ``support``; ``widths`` end at ``d_sae``.

    Level ``l`` holds latents ``[widths[l − 1], widths[l])`` (the first from 0).
    """
    return list(_LevelDecodes.apply(values.to(W_dec.dtype), W_dec, support, widths))
