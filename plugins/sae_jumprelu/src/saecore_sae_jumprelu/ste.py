"""Straight-through estimators for the JumpReLU and Heaviside step functions (Rajamanoharan et al., 2024).

Both functions are flat almost everywhere in the threshold ``θ``, so the true gradient
``∂/∂θ`` is zero. The estimators replace the Dirac delta at ``h = θ`` by a rectangle of
width ``ε`` (the bandwidth): ``δ(h − θ) ≈ rect((h − θ)/ε)/ε`` with ``rect(u) = 1[|u| < ½]``.

- ``JumpReLU(h, θ) = h·1[h > θ]``: ``∂h = 1[h > θ]·g``, ``∂θ = −Σ (θ/ε)·rect((h − θ)/ε)·g``.
- ``Step(h, θ) = 1[h > θ]``: ``∂θ = −Σ (1/ε)·rect((h − θ)/ε)·g``, no gradient to ``h``.

Both depend on ``h`` only through ``h − θ``, so with ``ste_to_input`` the estimator's
term is also passed to ``h`` with the opposite sign (Anthropic's setup, which lets the
sparsity penalty train the encoder). Sums run over every leading (batch) dimension,
since ``θ`` has one entry per latent.

The masks are written by the comparisons straight into tensors of ``h``'s dtype. A
boolean mask costs a cast to float, a full extra pass over ``[B, d_sae]``, every time it
enters a product (explicitly with ``.to`` or inside the multiplication's kernel), and
``torch.where`` on CPU is several times slower than a product when the mask is random
(it branches). The values are those of the cast masks: exactly 0 and 1.
"""

from __future__ import annotations

from typing import Any

import torch


def above(hidden_pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``1[h > θ]`` in ``h``'s dtype."""
    return torch.gt(hidden_pre, threshold, out=torch.empty_like(hidden_pre))


def rectangle(hidden_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``rect((h − θ)/ε) = 1[|h − θ|/ε < ½]`` in ``h``'s dtype: where both estimators act."""
    u = (hidden_pre - threshold).div_(bandwidth).abs_()
    return torch.lt(u, 0.5, out=u)


def _sum_to_threshold(per_element: torch.Tensor) -> torch.Tensor:
    """Sum over the leading dimensions; a 1-D input (one row, or a support's entries) already matches ``θ``.

    ``flatten`` rather than ``reshape(-1, n)``: a support with no entries is ``[0]``, and
    ``reshape(-1, 0)`` is ambiguous.
    """
    return per_element if per_element.dim() == 1 else per_element.flatten(0, -2).sum(dim=0)


class JumpReLU(torch.autograd.Function):
    """``JumpReLU.apply(h, θ, bandwidth, ste_to_input) = h·1[h > θ]``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float, ste_to_input: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(hidden_pre, threshold)
        ctx.bandwidth = bandwidth
        ctx.ste_to_input = ste_to_input
        return hidden_pre * above(hidden_pre, threshold)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        hidden_pre, threshold = ctx.saved_tensors
        bandwidth: float = ctx.bandwidth
        ste = (threshold / bandwidth) * rectangle(hidden_pre, threshold, bandwidth) * grad_output
        grad_hidden_pre = None
        if ctx.needs_input_grad[0]:
            grad_hidden_pre = above(hidden_pre, threshold) * grad_output
            if ctx.ste_to_input:
                grad_hidden_pre = grad_hidden_pre + ste
        grad_threshold = -_sum_to_threshold(ste) if ctx.needs_input_grad[1] else None
        return grad_hidden_pre, grad_threshold, None, None


class Step(torch.autograd.Function):
    """``Step.apply(h, θ, bandwidth, ste_to_input) = 1[h > θ]`` in ``h``'s dtype."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float, ste_to_input: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(hidden_pre, threshold)
        ctx.bandwidth = bandwidth
        ctx.ste_to_input = ste_to_input
        return above(hidden_pre, threshold)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        hidden_pre, threshold = ctx.saved_tensors
        bandwidth: float = ctx.bandwidth
        ste = rectangle(hidden_pre, threshold, bandwidth) * grad_output / bandwidth
        grad_hidden_pre = ste if ctx.ste_to_input and ctx.needs_input_grad[0] else None
        grad_threshold = -_sum_to_threshold(ste) if ctx.needs_input_grad[1] else None
        return grad_hidden_pre, grad_threshold, None, None
