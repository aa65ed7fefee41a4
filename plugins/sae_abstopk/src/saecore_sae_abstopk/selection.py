"""Selection by magnitude: what separates AbsTopK from TopK.

A latent is kept for its ``|h|`` and keeps its signed value, so a feature can fire in
either direction (Zhu et al., "AbsTopK", arXiv:2510.00404). Both the activation and the
AuxK loss's choice of dead latents select this way.
"""

from __future__ import annotations

import torch


def largest_magnitudes(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` of the ``k`` entries of largest ``|score|`` per row, values signed, in any order.

    A :data:`saecore.sparse.auxk.TopKSelector`, so the AuxK loss picks dead latents the same way.
    """
    indices = scores.abs().topk(k, dim=-1, sorted=False).indices
    return scores.gather(-1, indices), indices


def keep_largest_magnitudes(scores: torch.Tensor, k: int) -> torch.Tensor:
    """``scores`` with all but the ``k`` entries of largest ``|score|`` per row set to zero, signs kept."""
    values, indices = largest_magnitudes(scores, k)
    return torch.zeros_like(scores).scatter(-1, indices, values)
