"""Plain float64 formulas of every transcoder's step, written from the definitions, for comparison.

Each returns ``(prediction, feature activations, losses by name)`` from the parameters of a
training transcoder, with nothing shared with the plugin's code but the parameters.
"""

from __future__ import annotations

from typing import Any

import torch


def skip_term(sae: Any, x: torch.Tensor) -> torch.Tensor:
    return x @ sae.W_skip.T if hasattr(sae, "W_skip") else torch.zeros(x.shape[0], sae.cfg.d_out, dtype=x.dtype)


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (prediction - target).pow(2).sum(dim=-1).mean()


def relu_step(sae: Any, x: torch.Tensor, y: torch.Tensor, l1: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
    acts = torch.relu(x @ sae.W_enc + sae.b_enc)
    prediction = acts @ sae.W_dec + sae.b_dec + skip_term(sae, x)
    penalty = l1 * (acts * sae.W_dec.norm(dim=1)).sum(dim=-1).mean()
    return prediction, acts, {"mse_loss": mse(prediction, y), "l1_loss": penalty}


def jumprelu_step(sae: Any, x: torch.Tensor, y: torch.Tensor, l0: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Values only: the threshold's gradient is an estimator, checked separately."""
    hidden = x @ sae.W_enc + sae.b_enc
    fires = (hidden > sae.log_threshold.exp()).to(x.dtype).detach()
    acts = hidden * fires
    prediction = acts @ sae.W_dec + sae.b_dec + skip_term(sae, x)
    return prediction, acts, {"mse_loss": mse(prediction, y), "l0_loss": l0 * fires.sum(dim=-1).mean()}


def topk_step(
    sae: Any, x: torch.Tensor, y: torch.Tensor, dead: torch.Tensor, aux_coefficient: float
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """TopK ranking by ``h_i·‖W_dec,i‖``, decoding ``relu(h)`` at the kept latents; AuxK on the target's residual."""
    hidden = x @ sae.W_enc + sae.b_enc
    norms = sae.W_dec.norm(dim=1)
    kept = (hidden * norms).topk(sae.cfg.k, dim=-1).indices
    mask = torch.zeros_like(hidden).scatter(-1, kept, 1.0)
    acts = torch.relu(hidden) * mask
    prediction = acts @ sae.W_dec + sae.b_dec + skip_term(sae, x)
    losses = {"mse_loss": mse(prediction, y)}
    dead_latents = dead.nonzero().squeeze(1)
    k_aux = sae.cfg.d_out // 2
    scale = min(dead_latents.numel() / k_aux, 1.0)
    ranked = (hidden * norms)[:, dead_latents].topk(min(k_aux, dead_latents.numel()), dim=-1).indices
    aux_mask = torch.zeros_like(hidden).index_put((torch.arange(x.shape[0]).unsqueeze(1), dead_latents[ranked]),
                                                  torch.tensor(1.0, dtype=x.dtype))
    aux_prediction = (hidden * aux_mask) @ sae.W_dec
    residual = (y - prediction).detach()
    aux_error = (aux_prediction - residual).pow(2).sum(-1).mean()
    losses["auxiliary_reconstruction_loss"] = aux_coefficient * scale * aux_error
    return prediction, acts * norms, losses
