"""Greedy matching pursuit over unit-free decoder rows, vectorised over the rows of a batch.

Each step picks, per row, the latent whose decoder row has the largest dot product with
the residual, adds ``ReLU(residual · W_dec,i)`` to that latent's activation and removes
its contribution from the residual. The choice is not differentiated (it is an argmax);
the amounts are, through the residual, the decoder rows and the input.
"""

from __future__ import annotations

import torch


def matching_pursuit(
    centred: torch.Tensor,
    W_dec: torch.Tensor,
    residual_threshold: float,
    max_iterations: int | None,
    stop_on_duplicate_support: bool,
) -> torch.Tensor:
    """Activations ``[..., d_sae]`` that greedily reconstruct ``centred [..., d_in]`` from ``W_dec [d_sae, d_in]``.

    A row stops (its later amounts are zero) once a step leaves its support unchanged
    (with ``stop_on_duplicate_support``) or its residual norm falls below
    ``residual_threshold`` (when positive); the loop ends when every row has stopped or
    after ``max_iterations`` steps (``d_in`` when None).
    """
    d_sae, d_in = W_dec.shape
    residual = centred.reshape(-1, d_in)
    n_rows = residual.shape[0]
    check_support = stop_on_duplicate_support
    check_residual = residual_threshold > 0
    support = torch.zeros(n_rows, d_sae, dtype=torch.bool, device=residual.device)
    stopped = torch.zeros(n_rows, dtype=torch.bool, device=residual.device)
    latents: list[torch.Tensor] = []
    amounts: list[torch.Tensor] = []
    for _ in range(d_in if max_iterations is None else max_iterations):
        with torch.no_grad():
            latent = (residual @ W_dec.T).argmax(dim=-1)
        rows = W_dec[latent]
        amount = (residual * rows).sum(dim=-1).relu()
        if check_support or check_residual:
            amount = amount * (~stopped).to(amount.dtype)
        residual = residual - amount.unsqueeze(-1) * rows
        latents.append(latent)
        amounts.append(amount)
        if not (check_support or check_residual):
            continue
        with torch.no_grad():
            if check_support:
                had = support.gather(1, latent.unsqueeze(1)).squeeze(1)
                grows = (amount > 0) & ~had
                support.scatter_(1, latent.unsqueeze(1), (had | grows).unsqueeze(1))
                stopped |= ~grows
            if check_residual:
                stopped |= residual.norm(dim=-1) < residual_threshold
            if bool(stopped.all()):
                break
    acts = residual.new_zeros(n_rows, d_sae)
    if latents:
        acts = acts.scatter_add(1, torch.stack(latents, dim=1), torch.stack(amounts, dim=1))
    return acts.reshape(*centred.shape[:-1], d_sae)
