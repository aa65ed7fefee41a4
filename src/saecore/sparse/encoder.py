"""Pre-activations at a support's entries, differentiable through a sparse backward.

The encoder product ``x_c W_enc`` is the one product of a sparse step that stays dense;
it runs without a graph (or its graph is left unused), and only its values at the
support re-enter autograd here. The backward sums, for each latent, the input rows of
its entries (``∂W_enc[:, i] = Σ_e ∂L/∂h_e · x_c,row(e)``: one ``embedding_bag`` over the
entries sorted by latent), ``O(nnz · d_in)`` instead of ``O(N · d_sae · d_in)``. No
gradient w.r.t. the input is formed: a training batch never needs one.
"""

from __future__ import annotations

from typing import Any

import torch

from saecore.sparse.support import Support
from saecore.training_sae import TrainingSAE


class _SupportPreactivations(torch.autograd.Function):
    """``h`` at the support's entries, as a function of ``W_enc``, ``b_enc`` and ``b_dec``.

    The forward returns the values already computed; the backward is the sparse part.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor | None,
        b_dec: torch.Tensor,
        values: torch.Tensor,
        sae_in: torch.Tensor,
        support: Support,
        subtract_b_dec: bool,
    ) -> torch.Tensor:
        ctx.save_for_backward(W_enc, sae_in)
        ctx.support = support
        ctx.subtract_b_dec = subtract_b_dec
        return values.view_as(values)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        W_enc, sae_in = ctx.saved_tensors
        support: Support = ctx.support
        flat_grad = grad.to(W_enc.dtype).reshape(-1)  # under autocast the values, hence this gradient, may be bf16
        grad_b_enc = flat_grad.new_zeros(support.d_sae).index_add_(0, support.latents, flat_grad)
        grad_W_enc = None
        if ctx.needs_input_grad[0]:
            flat_in = sae_in.reshape(support.n_rows, -1)
            grad_W_enc = support.sum_rows_by_latent(flat_grad, flat_in).T.contiguous()
        grad_b_dec = None
        if ctx.subtract_b_dec and ctx.needs_input_grad[2]:
            # x_c = x − b_dec, so b_dec's share is −W_enc · Σ_b ∂L/∂h_b = −W_enc · ∂L/∂b_enc.
            grad_b_dec = -(W_enc @ grad_b_enc)
        return grad_W_enc, grad_b_enc if ctx.needs_input_grad[1] else None, grad_b_dec, None, None, None, None


def preactivations_at_support(
    values: torch.Tensor,
    support: Support,
    sae_in: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor | None,
    b_dec: torch.Tensor,
    subtract_b_dec: bool,
) -> torch.Tensor:
    """``values`` (``h = x_c W_enc + b_enc`` at ``support``'s entries, no graph), made differentiable.

    Gradients reach ``W_enc``, ``b_enc`` (when given) and, when ``subtract_b_dec``
    (``x_c = x − b_dec``), ``b_dec``. ``sae_in`` is the encoder input ``x_c``. ``values``
    keeps its shape (``[nnz]``, or ``[N, m]`` for codes).
    """
    return _SupportPreactivations.apply(W_enc, b_enc, b_dec, values, sae_in.detach(), support, subtract_b_dec)


def support_preactivations(
    sae: TrainingSAE[Any], sae_in: torch.Tensor, hidden_pre: torch.Tensor, support: Support
) -> torch.Tensor:
    """``hidden_pre`` at ``support``'s entries ``[nnz]``, differentiable in ``W_enc``, ``b_enc``, ``b_dec``.

    ``sae_in`` is the encoder input ``x_c`` (``x − b_dec`` when ``apply_b_dec_to_input``) and
    ``hidden_pre = x_c W_enc + b_enc`` the dense pre-activations computed from it.
    """
    values = hidden_pre.detach().reshape(-1)[support.positions]
    return preactivations_at_support(values, support, sae_in, sae.W_enc, sae.b_enc, sae.b_dec,
                                     sae.cfg.apply_b_dec_to_input)


def support_encoder_products(
    sae: TrainingSAE[Any], sae_in: torch.Tensor, products: torch.Tensor, support: Support
) -> torch.Tensor:
    """``products = x_c W_enc`` (no bias) at ``support``'s entries ``[nnz]``, differentiable in ``W_enc`` and ``b_dec``.

    For architectures whose encoder product feeds several paths, each with its own bias
    (gated: gate and magnitude), which the caller adds at the support's entries itself.
    """
    values = products.detach().reshape(-1)[support.positions]
    return preactivations_at_support(values, support, sae_in, sae.W_enc, None, sae.b_dec, sae.cfg.apply_b_dec_to_input)
