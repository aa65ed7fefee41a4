"""The encoder input ``x − b_dec`` without a batch-sized gradient for ``b_dec``.

Were ``x − b_dec`` part of the graph, autograd would differentiate ``(x − b_dec) W_enc``
with respect to its left factor, ``∂L/∂h · W_encᵀ``: a ``[B, d_sae] × [d_sae, d_in]``
product as costly as the encoder itself, computed only to be summed over the batch into
``∂L/∂b_dec``. That sum is ``−W_enc Σ_b ∂L/∂h_b``, a matrix-vector product. So the input
is centred with ``b_dec`` detached, and ``b_dec`` enters the graph through a ``[d_sae]``
vector that is zero in value and is added to the encoder bias: the gradient arriving
there is ``Σ_b ∂L/∂h_b``, which its backward turns into ``b_dec``'s. The values computed
are unchanged (the bias gains an exact zero) and a dense step needs one matmul fewer.

The batch is data and needs no gradient; if it has one (``x.requires_grad``), autograd
still forms ``∂L/∂x`` through the detached centring, as it must.
"""

from __future__ import annotations

from typing import Any

import torch

from saecore.sae import SAE


class _BDecThroughEncoderBias(torch.autograd.Function):
    """``zeros(d_sae)``, added to the encoder bias, whose backward gives ``b_dec`` ``−W_enc · grad``."""

    @staticmethod
    def forward(ctx: Any, b_dec: torch.Tensor, W_enc: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(W_enc)
        return W_enc.new_zeros(W_enc.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (W_enc,) = ctx.saved_tensors
        return -(W_enc @ grad.to(W_enc.dtype)), None


def centred_input(sae: SAE[Any], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sae_in, b_dec_term)``: ``sae.process_sae_in(x)`` and the zero vector carrying ``b_dec``'s gradient.

    Add ``b_dec_term`` to every bias added to ``sae_in @ W_enc`` (scaled as that product is).
    It is a constant zero where ``b_dec`` gets no gradient this way: ``b_dec`` frozen,
    gradients off, or ``apply_b_dec_to_input`` off. ``hook_z`` inputs (which a training SAE
    never reshapes) keep the core's path, whose graph already holds ``b_dec``.
    """
    b_dec = sae.b_dec
    lean = sae.cfg.apply_b_dec_to_input and b_dec.requires_grad and torch.is_grad_enabled()
    if not lean or sae.reshape_hook_z:
        return sae.process_sae_in(x), sae.W_enc.new_zeros(sae.cfg.d_sae)
    prepared = sae.normalize_in(sae.hook_sae_input(x.to(sae.dtype)))
    return prepared - b_dec.detach(), _BDecThroughEncoderBias.apply(b_dec, sae.W_enc)
