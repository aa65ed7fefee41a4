"""Causal attention from earlier positions' codes to the current position's, as the temporal SAE uses it.

Keys and values come from the context codes, queries from the current codes; queries and
keys are projected down to ``d_sae / bottleneck_factor`` dimensions, values keep ``d_sae``.
Parameter names (``k_ctx``, ``q_target``, ``v_ctx``, ``c_proj``) are those of the
published checkpoints and SAELens's files.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ContextAttention(nn.Module):
    """Multi-head causal attention ``[B, T, d_sae] × [B, T, d_sae] → [B, T, d_sae]``."""

    def __init__(
        self, d_sae: int, n_heads: int, bottleneck_factor: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_key = d_sae // bottleneck_factor
        self.d_sae = d_sae
        factory = {"device": device, "dtype": dtype}
        self.k_ctx = nn.Linear(d_sae, self.d_key, **factory)
        self.q_target = nn.Linear(d_sae, self.d_key, **factory)
        self.v_ctx = nn.Linear(d_sae, d_sae, **factory)
        self.c_proj = nn.Linear(d_sae, d_sae, **factory)
        if device.type != "meta":
            self._scale_initial_rows()

    @torch.no_grad()
    def _scale_initial_rows(self) -> None:
        """Rows of equal norm, ``1/√(head width)`` (``1/√d_sae`` for the output), so fresh scores stay O(1)."""
        head_key = self.d_key // self.n_heads
        head_value = self.d_sae // self.n_heads
        for layer, norm in ((self.k_ctx, head_key), (self.q_target, head_key), (self.v_ctx, head_value),
                            (self.c_proj, self.d_sae)):
            weight = layer.weight
            weight.mul_(1 / math.sqrt(norm) / (weight.norm(dim=1, keepdim=True) + 1e-6))

    def forward(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        batch, length, _ = context.shape

        def heads(projected: torch.Tensor) -> torch.Tensor:
            return projected.view(batch, length, self.n_heads, -1).transpose(1, 2)

        mixed = F.scaled_dot_product_attention(
            heads(self.q_target(target)), heads(self.k_ctx(context)), heads(self.v_ctx(context)), is_causal=True
        )
        return self.c_proj(mixed.transpose(1, 2).reshape(batch, length, self.d_sae))
