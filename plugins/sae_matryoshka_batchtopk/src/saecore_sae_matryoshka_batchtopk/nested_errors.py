"""Matryoshka's nested reconstructions and their squared errors as one autograd node.

The prefixes ``p_l = b_dec + Σ_{j≤l} d_l`` of the level decodes ``d_l`` each carry an
error ``mean_b ‖p_l − x‖²``. Written as separate operations, every level adds a chain of
``[N, d_in]`` elementwise passes each way (the sum, the difference, its square, and in
backward the square's derivative, the difference's and the accumulation into every earlier
prefix): on CPU these small passes cost more than the level decodes themselves. Here the
forward takes three passes a level (sum, difference, its dot product with itself) and the
backward one: the gradient of ``d_l`` is the reconstruction's gradient plus the suffix sum
``Σ_{m≥l} (2 g_m / N) (p_m − x)`` over the inner levels, built from the outermost inward.
"""

from __future__ import annotations

from typing import Any

import torch


class _NestedErrors(torch.autograd.Function):
    """``(errors [L − 1], p_L)`` of ``b_dec``, ``x`` and the level decodes ``d_1 … d_L``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, b_dec: torch.Tensor, x: torch.Tensor, *decodes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n_rows = x.shape[:-1].numel()
        prefix = b_dec + decodes[0]
        differences, errors = [], []
        for decode in decodes[1:]:
            difference = (prefix - x).reshape(-1)
            differences.append(difference)
            errors.append(torch.dot(difference, difference))
            prefix = prefix + decode
        ctx.save_for_backward(*differences)
        ctx.n_rows = n_rows
        inner = torch.stack(errors) / n_rows if errors else prefix.new_zeros(0)
        return inner, prefix

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_errors: torch.Tensor, grad_prefix: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        differences = ctx.saved_tensors
        scales = grad_errors * (2 / ctx.n_rows)
        running = grad_prefix
        grads = [running]
        for level in reversed(range(len(differences))):
            running = torch.addcmul(running, differences[level].view_as(running), scales[level])
            grads.append(running)
        grads.reverse()
        grad_b_dec = running.reshape(-1, running.shape[-1]).sum(0) if ctx.needs_input_grad[0] else None
        return grad_b_dec, None, *grads


def nested_errors(
    b_dec: torch.Tensor, x: torch.Tensor, decodes: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(errors, reconstruction)``: ``mean_b ‖b_dec + Σ_{j≤l} d_j − x‖²`` for each inner level ``l``, and ``p_L``.

    ``decodes`` are the levels' decodes ``[N, d_in]``, innermost first; ``errors`` is
    ``[len(decodes) − 1]`` (the outermost level's error is the step's MSE, computed from
    the reconstruction like any other step's). No gradient reaches ``x``.
    """
    errors, reconstruction = _NestedErrors.apply(b_dec, x.detach(), *decodes)
    return errors, reconstruction
