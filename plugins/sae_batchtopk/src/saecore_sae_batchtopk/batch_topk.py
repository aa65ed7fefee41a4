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

BoundSelector = Callable[[torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]
"""``(scores [N, n], t) -> (positions, values)``: the entries ``v`` with ``not v < t``, row-major, at flat positions."""


@dataclass(frozen=True)
class KeptEntries:
    """The positive entries a batch selection keeps, grouped by ascending row (any latent order within a row).

    ``scores`` are their values and ``positions`` their flat ``row · d_sae + latent`` where the
    search found them (else None). ``busiest_row`` is the most any one row keeps and ``cutoff``
    the batch's ``int(k·N)``-th largest score (0 when fewer are positive): they tell the next
    batch where to start its search.
    """

    rows: torch.Tensor
    latents: torch.Tensor
    scores: torch.Tensor
    busiest_row: int
    cutoff: float
    positions: torch.Tensor | None = None


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
    flat = _kept_candidates(values.numel(), kept)
    rows = torch.div(flat, width, rounding_mode="floor")
    return KeptEntries(rows, latents.reshape(-1)[flat], values.reshape(-1)[flat], _busiest_row(rows, n_rows),
                       _cutoff(kept.values))


def batch_topk_entries_not_below(
    scores: torch.Tensor, k: float, select_not_below: BoundSelector, bound: float
) -> KeptEntries | None:
    """The positive entries :func:`batch_topk` keeps of ``scores [N, d_sae]``, if its cut-off is at least ``bound``.

    The candidates are every entry not below ``bound`` (``bound > 0``), listed row-major in
    one pass over the scores: when there are at least ``int(k·N)`` of them, the batch's
    ``int(k·N)`` largest are among them, and one top-k over the candidates finds them.
    With fewer, the cut-off lies below the bound and this returns None.
    """
    if not bound > 0:
        raise ValueError(f"batch_topk_entries_not_below: bound must be positive, got {bound}")
    n_rows, d_sae = scores.shape
    n_keep = min(int(k * n_rows), scores.numel())
    positions, values = select_not_below(scores, bound)
    if n_keep == 0 or values.numel() < n_keep:
        return None
    kept = values.topk(n_keep, sorted=False)
    flat = _kept_candidates(values.numel(), kept)
    kept_positions = positions[flat]
    rows = torch.div(kept_positions, d_sae, rounding_mode="floor")
    return KeptEntries(rows, kept_positions - rows * d_sae, values[flat], _busiest_row(rows, n_rows),
                       _cutoff(kept.values), kept_positions)


def _kept_candidates(n_candidates: int, kept: torch.return_types.topk) -> torch.Tensor:
    """The ascending indices of the kept positive candidates: a mask over them, then its nonzeros (no sort)."""
    chosen = torch.zeros(n_candidates, dtype=torch.bool, device=kept.values.device)
    chosen[kept.indices[kept.values > 0]] = True
    return chosen.nonzero().squeeze(1)


def _busiest_row(rows: torch.Tensor, n_rows: int) -> int:
    return int(torch.bincount(rows, minlength=n_rows).max()) if n_rows > 0 else 0


def _cutoff(kept_values: torch.Tensor) -> float:
    return float(kept_values.min().clamp_min(0)) if kept_values.numel() > 0 else 0.0
