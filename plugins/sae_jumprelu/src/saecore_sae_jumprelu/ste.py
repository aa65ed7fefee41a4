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
"""

from __future__ import annotations

from typing import Any

import torch


def rectangle(u: torch.Tensor) -> torch.Tensor:
    """``1[|u| < ½]`` in ``u``'s dtype: the kernel of both estimators."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


def _sum_to_threshold(per_element: torch.Tensor) -> torch.Tensor:
    return per_element.reshape(-1, per_element.shape[-1]).sum(dim=0)


class JumpReLU(torch.autograd.Function):
    """``JumpReLU.apply(h, θ, bandwidth, ste_to_input) = h·1[h > θ]``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float, ste_to_input: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(hidden_pre, threshold)
        ctx.bandwidth = bandwidth
        ctx.ste_to_input = ste_to_input
        return hidden_pre * (hidden_pre > threshold)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        hidden_pre, threshold = ctx.saved_tensors
        bandwidth: float = ctx.bandwidth
        ste = (threshold / bandwidth) * rectangle((hidden_pre - threshold) / bandwidth) * grad_output
        grad_hidden_pre = None
        if ctx.needs_input_grad[0]:
            grad_hidden_pre = (hidden_pre > threshold) * grad_output
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
        return (hidden_pre > threshold).to(hidden_pre.dtype)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        hidden_pre, threshold = ctx.saved_tensors
        bandwidth: float = ctx.bandwidth
        ste = rectangle((hidden_pre - threshold) / bandwidth) * grad_output / bandwidth
        grad_hidden_pre = ste if ctx.ste_to_input and ctx.needs_input_grad[0] else None
        grad_threshold = -_sum_to_threshold(ste) if ctx.needs_input_grad[1] else None
        return grad_hidden_pre, grad_threshold, None, None
