"""The gated encoder's elementwise part as one autograd node that keeps nothing the decoder does not.

Written as separate ops, ``π = s + b_gate``, ``m = s·g + b_mag``, ``1[π > 0]``, ``ReLU(m)``,
their product ``f`` and ``ReLU(π)`` each leave a ``[batch, d_sae]`` tensor alive, most of
them saved for backward: at d_sae 24576 and 4096 tokens each is 384 MiB. Backward needs
only ``f`` and ``r = ReLU(π)``, which the main and auxiliary decoder products keep anyway:

- ``∂f/∂m`` is ``1`` exactly where ``f > 0`` (the gate is open and ``m > 0``), else ``0``;
- ``∂r/∂π`` is ``1`` exactly where ``r > 0``;
- ``∂m/∂g = s``, needed only where ``∂f/∂m ≠ 0``, where ``m = f`` and so
  ``s = (f − b_mag) / g``: the gain's gradient is ``(Σ_b ∂L/∂m · f − b_mag Σ_b ∂L/∂m) / g``.

The values are the separate ops' values bit for bit; the gradients are the same sums up to
rounding (tests compare both with float64 references). The magnitude pre-activation is
never materialised, so this node serves only steps where no hook watches
``hook_sae_acts_pre`` (the caller checks).
"""

from __future__ import annotations

from typing import Any

import torch

_ROWS_PER_CHUNK = 512  # bounds the temporary of Σ_b ∂L/∂m · f to 512 rows


def _sum_to_latents(per_entry: torch.Tensor) -> torch.Tensor:
    return per_entry.reshape(-1, per_entry.shape[-1]).sum(dim=0)


def _sum_of_products_to_latents(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_rows a ⊙ b`` per latent, a chunk of rows at a time instead of one full-size product."""
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    total = torch.zeros(a.shape[-1], dtype=a.dtype, device=a.device)
    for a_rows, b_rows in zip(a.split(_ROWS_PER_CHUNK), b.split(_ROWS_PER_CHUNK), strict=True):
        total += (a_rows * b_rows).sum(dim=0)
    return total


class GatedEncoding(torch.autograd.Function):
    """``(f, ReLU(π))`` from ``s = x_c W_enc``, the gain ``e^{r_mag}`` and both paths' biases."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, shared: torch.Tensor, gain: torch.Tensor, gate_bias: torch.Tensor, magnitude_bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        gate_acts = torch.relu_(shared + gate_bias)
        feature_acts = shared * gain
        feature_acts += magnitude_bias
        feature_acts.relu_().masked_fill_(gate_acts <= 0, 0.0)
        ctx.save_for_backward(gain, magnitude_bias, feature_acts, gate_acts)
        return feature_acts, gate_acts

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_feature_acts: torch.Tensor | None, grad_gate_acts: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        gain, magnitude_bias, feature_acts, gate_acts = ctx.saved_tensors
        if grad_feature_acts is None:
            grad_feature_acts = torch.zeros_like(feature_acts)
        if grad_gate_acts is None:
            grad_gate_acts = torch.zeros_like(gate_acts)
        grad_magnitude_pre = grad_feature_acts.masked_fill(feature_acts <= 0, 0.0)
        grad_magnitude_bias = _sum_to_latents(grad_magnitude_pre)
        grad_magnitude_times_f = _sum_of_products_to_latents(grad_magnitude_pre, feature_acts)
        grad_gain = (grad_magnitude_times_f - magnitude_bias * grad_magnitude_bias) / gain
        grad_gate_pre = grad_gate_acts.masked_fill(gate_acts <= 0, 0.0)
        grad_gate_bias = _sum_to_latents(grad_gate_pre)
        grad_shared = grad_gate_pre.addcmul_(grad_magnitude_pre, gain)
        return grad_shared, grad_gain, grad_gate_bias, grad_magnitude_bias
