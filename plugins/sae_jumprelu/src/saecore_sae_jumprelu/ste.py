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


class JumpReLUWithL0(torch.autograd.Function):
    """``(JumpReLU(h, θ), Σ_i Step(h_i, θ_i))``: the activations and each row's L0 from one set of masks.

    The dense step applies both estimators to the same ``h`` and ``θ``. As two functions
    they form ``1[h > θ]`` three times and the window ``rect((h − θ)/ε)`` twice, each a
    pass over ``[B, d_sae]``; here the backward receives both outputs' gradients at once
    and forms each mask once. Step's gradient is constant along a row (the row sum
    broadcasts it), so its part of ``∂θ`` is one product ``windowᵀ · ∂L/∂L0``. The
    gradients are those of :class:`JumpReLU` and :class:`Step` applied separately.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float, ste_to_input: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(hidden_pre, threshold)
        ctx.bandwidth = bandwidth
        ctx.ste_to_input = ste_to_input
        ctx.set_materialize_grads(False)
        mask = above(hidden_pre, threshold)
        return hidden_pre * mask, mask.sum(dim=-1)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_acts: torch.Tensor | None, grad_l0: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        hidden_pre, threshold = ctx.saved_tensors
        bandwidth: float = ctx.bandwidth
        window = rectangle(hidden_pre, threshold, bandwidth)
        if ctx.ste_to_input:
            return _with_estimator_to_input(hidden_pre, threshold, bandwidth, window, grad_acts, grad_l0, ctx)
        rows = window.reshape(-1, window.shape[-1])
        grad_threshold = None
        if ctx.needs_input_grad[1]:
            grad_threshold = torch.zeros_like(threshold)
            if grad_l0 is not None:
                grad_threshold -= rows.T.mv(grad_l0.reshape(-1).to(rows.dtype)) / bandwidth
            if grad_acts is not None:
                grad_threshold -= (threshold / bandwidth) * rows.mul_(grad_acts.reshape(rows.shape)).sum(dim=0)
        grad_hidden_pre = None
        if ctx.needs_input_grad[0] and grad_acts is not None:
            grad_hidden_pre = above(hidden_pre, threshold).mul_(grad_acts)
        return grad_hidden_pre, grad_threshold, None, None


def _with_estimator_to_input(
    hidden_pre: torch.Tensor,
    threshold: torch.Tensor,
    bandwidth: float,
    window: torch.Tensor,
    grad_acts: torch.Tensor | None,
    grad_l0: torch.Tensor | None,
    ctx: Any,
) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
    """``ste_to_input``: both estimators' per-entry terms also reach ``h``, so they are formed in full."""
    per_entry = torch.zeros_like(hidden_pre)
    if grad_acts is not None:
        per_entry += (threshold / bandwidth) * grad_acts
    if grad_l0 is not None:
        per_entry += grad_l0.unsqueeze(-1) / bandwidth
    estimator = window.mul_(per_entry)
    grad_hidden_pre = None
    if ctx.needs_input_grad[0]:
        grad_hidden_pre = estimator if grad_acts is None else above(hidden_pre, threshold) * grad_acts + estimator
    grad_threshold = -_sum_to_threshold(estimator) if ctx.needs_input_grad[1] else None
    return grad_hidden_pre, grad_threshold, None, None
