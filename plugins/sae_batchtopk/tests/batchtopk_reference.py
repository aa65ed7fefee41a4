"""An independent float64 BatchTopK, written from the formulas (not from the plugin's code).

The batch selection is found by sorting every activation of the batch and keeping those
at or above the ``int(k·N)``-th largest; AuxK's per-input selection by sorting each row.
"""

from __future__ import annotations

import torch


def random_parameters(d_in: int, d_sae: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape: int, scale: float) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale

    return {
        "W_enc": draw(d_in, d_sae, scale=0.5),
        "b_enc": draw(d_sae, scale=0.1),
        "W_dec": draw(d_sae, d_in, scale=0.5),
        "b_dec": draw(d_in, scale=0.1),
    }


def scores(p: dict[str, torch.Tensor], x: torch.Tensor, rescale: bool, apply_b_dec: bool = True) -> torch.Tensor:
    centred = x - p["b_dec"] if apply_b_dec else x
    hidden_pre = centred @ p["W_enc"] + p["b_enc"]
    return hidden_pre * p["W_dec"].norm(dim=1) if rescale else hidden_pre


def batch_selection(h: torch.Tensor, k: float) -> torch.Tensor:
    """``ReLU(h)`` where it is among the ``int(k·N)`` largest of the batch, else 0."""
    acts = torch.relu(h)
    n_keep = int(k * acts[..., 0].numel())
    cutoff = acts.flatten().sort(descending=True).values[n_keep - 1]
    return acts * (acts >= cutoff).double()


def decode(p: dict[str, torch.Tensor], f: torch.Tensor, rescale: bool) -> torch.Tensor:
    if rescale:
        f = f / p["W_dec"].norm(dim=1)
    return f @ p["W_dec"] + p["b_dec"]


def auxk(
    p: dict[str, torch.Tensor], h: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor, dead: torch.Tensor,
    rescale: bool, rows: slice = slice(None),
) -> torch.Tensor:
    """AuxK over the latents ``rows`` (all by default), before ``aux_loss_coefficient``."""
    h, dead, W_dec = h[..., rows], dead[rows], p["W_dec"][rows]
    n_dead = int(dead.sum())
    k_aux = x.shape[-1] // 2
    scale = min(n_dead / k_aux, 1.0)
    kept = min(k_aux, n_dead)
    masked = torch.where(dead, h, torch.tensor(float("-inf"), dtype=h.dtype))
    order = masked.sort(dim=-1, descending=True).indices[..., :kept]
    chosen = torch.zeros_like(h, dtype=torch.bool).scatter(-1, order, True)
    a = h * chosen.double()
    if rescale:
        a = a / W_dec.norm(dim=1)
    residual = (x - x_hat).detach()
    return scale * ((a @ W_dec - residual) ** 2).sum(-1).mean()
