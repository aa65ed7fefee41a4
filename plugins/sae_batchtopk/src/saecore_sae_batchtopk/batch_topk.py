"""The two pieces of BatchTopK that are not plain linear algebra: the selection and the threshold.

Both are public so that recipes built on BatchTopK (Matryoshka) reuse them instead of
re-deriving them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


def batch_topk(scores: torch.Tensor, k: float) -> torch.Tensor:
    """``ReLU(scores)`` with all but its ``int(k·N)`` largest entries zeroed, over all ``N`` inputs at once.

    ``scores`` is ``[..., d_sae]``; the leading dimensions together count as the batch,
    so a ``[B, T, d_sae]`` input keeps ``k·B·T`` activations. An input may keep more or
    fewer than ``k`` latents: only the batch average is ``k``.
    """
    acts = scores.relu()
    flat = acts.flatten()
    n_keep = min(int(k * acts.shape[:-1].numel()), flat.numel())
    kept = flat.topk(n_keep, sorted=False)
    return torch.zeros_like(flat).scatter(0, kept.indices, kept.values).reshape(acts.shape)


@torch.no_grad()
def updated_threshold(threshold: torch.Tensor, feature_acts: torch.Tensor, lr: float) -> torch.Tensor:
    """``θ ← (1 − η)·θ + η·min(positive activations)``; ``θ`` is unchanged when nothing fired.

    Written with ``torch.where`` rather than an ``if``, so a training step never waits for
    the device to say whether anything fired. The result has ``threshold``'s dtype (float64:
    the moving average of small numbers loses its low bits in float32).
    """
    acts = feature_acts.detach()
    smallest = torch.where(acts > 0, acts, torch.inf).min().to(threshold.dtype)
    moved = (1 - lr) * threshold + lr * smallest
    return torch.where(torch.isfinite(smallest), moved, threshold)


RowSelector = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
"""``(scores [N, n], m) -> (values [N, m], latents [N, m])``: each row's m largest, in any order."""


@dataclass(frozen=True)
class KeptEntries:
    """The positive entries a batch selection keeps, grouped by ascending row (any latent order within a row).

    ``scores`` are their values; ``busiest_row`` is the most any one row keeps, which tells
    the next batch how many candidates per row to start from.
    """

    rows: torch.Tensor
    latents: torch.Tensor
    scores: torch.Tensor
    busiest_row: int


def batch_topk_entries(scores: torch.Tensor, k: float, select_rows: RowSelector, width: int) -> KeptEntries:
    """The positive entries :func:`batch_topk` keeps of ``scores`` ``[N, d_sae]``.

    The batch's ``int(k·N)`` largest entries are found among each row's ``width`` largest
    (the candidates), which costs one row-wise selection and a top-k over ``N·width``
    values instead of over all ``N·d_sae``. That is exact when no row could hold more: a
    row whose smallest candidate is above the batch's cut-off may hide further entries
    above it, and then the search repeats with twice the width (up to ``d_sae``).
    """
    n_rows, d_sae = scores.shape
    n_keep = min(int(k * n_rows), scores.numel())
    width = min(max(width, math.ceil(k)), d_sae)
    while True:
        values, latents = select_rows(scores, width)
        kept = values.reshape(-1).topk(n_keep, sorted=False)
        if width == d_sae or n_keep == 0:
            break
        cutoff = kept.values.min().clamp_min(0)
        if not bool((values.min(dim=1).values > cutoff).any()):
            break
        width = min(2 * width, d_sae)
    # A mask over the candidates lists the kept ones row by row, without sorting them.
    chosen = torch.zeros(values.numel(), dtype=torch.bool, device=values.device)
    chosen[kept.indices[kept.values > 0]] = True
    busiest_row = int(chosen.view(n_rows, width).sum(dim=1).max()) if n_rows > 0 else 0
    flat = chosen.nonzero().squeeze(1)
    rows = torch.div(flat, width, rounding_mode="floor")
    return KeptEntries(rows, latents.reshape(-1)[flat], values.reshape(-1)[flat], busiest_row)
