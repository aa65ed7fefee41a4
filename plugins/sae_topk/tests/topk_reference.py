"""An independent float64 TopK SAE, written from the formulas with plain dense torch ops.

Nothing here imports the plugin: tests compare the plugin against these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LAYER_NORM_EPS = 1e-5


@dataclass
class RefParams:
    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor


@dataclass
class RefOptions:
    k: int
    rescale: bool = False
    apply_b_dec_to_input: bool = True
    normalize: str = "none"
    aux_coefficient: float = 1.0


def random_params(d_in: int, d_sae: int, seed: int) -> RefParams:
    """Float64 parameters with decoder rows of very different norms, so rescaling changes the ranking."""
    gen = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(d_sae, d_in, generator=gen, dtype=torch.float64)
    W_dec = W_dec * (0.2 + 3 * torch.rand(d_sae, 1, generator=gen, dtype=torch.float64))
    return RefParams(
        W_enc=torch.randn(d_in, d_sae, generator=gen, dtype=torch.float64) / math.sqrt(d_in),
        b_enc=0.3 * torch.randn(d_sae, generator=gen, dtype=torch.float64),
        W_dec=W_dec,
        b_dec=0.5 * torch.randn(d_in, generator=gen, dtype=torch.float64),
    )


def normalize_in(x: torch.Tensor, mode: str) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    if mode == "constant_norm_rescale":
        scale = math.sqrt(x.shape[-1]) / torch.sqrt((x * x).sum(-1, keepdim=True))
        return x * scale, (scale,)
    if mode == "layer_norm":
        mean = x.mean(-1, keepdim=True)
        std = torch.sqrt(((x - mean) ** 2).sum(-1, keepdim=True) / (x.shape[-1] - 1))
        return (x - mean) / (std + LAYER_NORM_EPS), (mean, std)
    return x, ()


def normalize_out(x: torch.Tensor, mode: str, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
    if mode == "constant_norm_rescale":
        return x / state[0]
    if mode == "layer_norm":
        return x * state[1] + state[0]
    return x


def decoder_norms(W_dec: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((W_dec * W_dec).sum(-1))


def top_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest entries of each row (ranked by a full descending sort)."""
    order = torch.argsort(scores, dim=-1, descending=True)
    return torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order[..., :k], True)


def ranking_scores(x: torch.Tensor, p: RefParams, o: RefOptions) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """h' = ((norm(x) − b_dec) W_enc + b_enc) ⊙ ‖W_dec‖ (or without the norms)."""
    x_n, state = normalize_in(x, o.normalize)
    x_c = x_n - p.b_dec if o.apply_b_dec_to_input else x_n
    h = x_c @ p.W_enc + p.b_enc
    if o.rescale:
        h = h * decoder_norms(p.W_dec)
    return h, state


def encode(x: torch.Tensor, p: RefParams, o: RefOptions) -> torch.Tensor:
    h, _ = ranking_scores(x, p, o)
    return torch.where(top_mask(h, o.k), torch.clamp(h, min=0), torch.zeros_like(h))


def decode(f: torch.Tensor, p: RefParams, o: RefOptions, state: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
    if o.rescale:
        f = f / decoder_norms(p.W_dec)
    return normalize_out(f @ p.W_dec + p.b_dec, o.normalize, state)


def forward(x: torch.Tensor, p: RefParams, o: RefOptions) -> torch.Tensor:
    h, state = ranking_scores(x, p, o)
    f = torch.where(top_mask(h, o.k), torch.clamp(h, min=0), torch.zeros_like(h))
    return decode(f, p, o, state)


def losses(
    x: torch.Tensor,
    p: RefParams,
    o: RefOptions,
    dead: torch.Tensor | None,
    target: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """MSE and AuxK of one training batch, differentiable w.r.t. every parameter.

    The prediction ``x̂`` (plus ``extra`` if given) is compared with ``target`` (``x`` if
    None): ``x̂ − target`` is the MSE's error, ``target − x̂`` AuxK's residual.
    """
    h, state = ranking_scores(x, p, o)
    f = torch.where(top_mask(h, o.k), torch.clamp(h, min=0), torch.zeros_like(h))
    x_hat = decode(f, p, o, state)
    if extra is not None:
        x_hat = x_hat + extra
    if target is None:
        target = x
    mse = ((x_hat - target) ** 2).sum(-1).mean()
    n_dead = 0 if dead is None else int(dead.sum())
    if n_dead == 0:
        return {"mse_loss": mse, "auxiliary_reconstruction_loss": torch.zeros((), dtype=x.dtype), "f": f, "h": h}
    k_aux = x.shape[-1] // 2
    scale = min(n_dead / k_aux, 1.0)
    k_aux = min(k_aux, n_dead)
    dead_scores = torch.where(dead, h, torch.full_like(h, -math.inf))
    a = torch.where(top_mask(dead_scores, k_aux), h, torch.zeros_like(h))
    if o.rescale:
        a = a / decoder_norms(p.W_dec)
    e_hat = a @ p.W_dec
    residual = (target - x_hat).detach()
    aux = o.aux_coefficient * scale * ((e_hat - residual) ** 2).sum(-1).mean()
    return {"mse_loss": mse, "auxiliary_reconstruction_loss": aux, "f": f, "h": h}
