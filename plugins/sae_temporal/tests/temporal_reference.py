"""A float64 temporal SAE written from the paper's formulas, one sequence and one head at a time.

Shared by this package's tests; nothing here imports the plugin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

EPS = 1e-6
ATTENTION = ("k_ctx", "q_target", "v_ctx", "c_proj")


def random_params(cfg: Mapping[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Every tensor of a temporal SAE with ``cfg``'s sizes, named as in its state dict."""
    generator = torch.Generator().manual_seed(seed)
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    d_key = d_sae // cfg["bottleneck_factor"]

    def normal(*shape: int, scale: float) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale

    params = {"W_dec": normal(d_sae, d_in, scale=1.0), "b_dec": normal(d_in, scale=0.3)}
    if not cfg.get("tied_weights", True):
        params["W_enc"] = normal(d_in, d_sae, scale=1.0)
    for layer in range(cfg.get("n_attn_layers", 1)):
        for name, rows in (("k_ctx", d_key), ("q_target", d_key), ("v_ctx", d_sae), ("c_proj", d_sae)):
            params[f"attn_layers.{layer}.{name}.weight"] = normal(rows, d_sae, scale=0.5 / math.sqrt(d_sae))
            params[f"attn_layers.{layer}.{name}.bias"] = normal(rows, scale=0.1)
    return params


def _attention(p: Mapping[str, torch.Tensor], layer: int, n_heads: int, context: torch.Tensor,
               target: torch.Tensor) -> torch.Tensor:
    """Causal multi-head attention of one sequence ``[T, d_sae]``, softmax written out."""
    def linear(name: str, inputs: torch.Tensor) -> torch.Tensor:
        return inputs @ p[f"attn_layers.{layer}.{name}.weight"].T + p[f"attn_layers.{layer}.{name}.bias"]

    keys, queries, values = linear("k_ctx", context), linear("q_target", target), linear("v_ctx", context)
    length = context.shape[0]
    heads = []
    for k, q, v in zip(keys.chunk(n_heads, -1), queries.chunk(n_heads, -1), values.chunk(n_heads, -1), strict=True):
        scores = q @ k.T / math.sqrt(q.shape[-1])
        future = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
        weights = torch.softmax(scores.masked_fill(future, -math.inf), dim=-1)
        heads.append(weights @ v)
    return linear("c_proj", torch.cat(heads, dim=-1))


def encode_sequence(cfg: Mapping[str, Any], p: Mapping[str, torch.Tensor], x: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z_novel, z_pred)`` of one sequence ``x [T, d_in]`` (already normalised and centred)."""
    encoder = p["W_dec"].T if cfg.get("tied_weights", True) else p["W_enc"]
    lam = 1 / (4 * cfg["d_in"])
    residual = x
    z_pred = torch.zeros(x.shape[0], cfg["d_sae"], dtype=torch.float64)
    for layer in range(cfg.get("n_attn_layers", 1)):
        codes = torch.clamp(lam * residual @ encoder, min=0)
        context = torch.cat([torch.zeros_like(codes[:1]), codes[:-1]])
        predicted = torch.clamp(_attention(p, layer, cfg.get("n_heads", 8), context, codes), min=0)
        decoded = predicted @ p["W_dec"]
        step = (decoded * residual).sum(-1, keepdim=True) / (decoded.norm(dim=-1, keepdim=True) + EPS) ** 2
        z_pred = z_pred + step * predicted
        residual = residual - step * decoded
    z_novel = torch.clamp(lam * residual @ encoder, min=0)
    k = cfg.get("kval_topk")
    if cfg.get("sae_diff_type", "topk") == "topk" and k is not None:
        for position in range(z_novel.shape[0]):
            dropped = z_novel[position].argsort(descending=True)[k:]
            z_novel[position, dropped] = 0
    return z_novel, z_pred


def reference(cfg: Mapping[str, Any], p: Mapping[str, torch.Tensor], x: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(z_novel, z_pred, decode(z_novel), forward(x))`` for sequences ``x [B, T, d_in]``."""
    factor = cfg.get("activation_normalization_factor", 1.0)
    scalar = cfg.get("normalize_activations", "none") == "constant_scalar_rescale"
    tied = cfg.get("tied_weights", True)
    b_dec_in = cfg.get("apply_b_dec_to_input", True)
    x = x.double() * (factor if scalar else 1.0)
    if b_dec_in:
        x = x - p["b_dec"]
    pairs = [encode_sequence(cfg, p, sequence) for sequence in x]
    z_novel = torch.stack([novel for novel, _ in pairs])
    z_pred = torch.stack([pred for _, pred in pairs])
    bias = p["b_dec"] if (not tied or b_dec_in) else torch.zeros_like(p["b_dec"])

    def decode(codes: torch.Tensor) -> torch.Tensor:
        return (codes @ p["W_dec"] + bias) / (factor if scalar else 1.0)

    return z_novel, z_pred, decode(z_novel), decode(z_novel + z_pred)
