"""A score matrix's entries not below a bound: the candidates of a batch-wide top-k with a bounded cut-off.

BatchTopK keeps a batch's ``k·N`` largest scores of ``N·d_sae``. When its cut-off is known
to be at least ``t``, the kept entries are among those with ``score >= t``, a few percent
more than ``k·N`` when ``t`` lies just below the cut-off. Listing them with torch
(``(scores >= t).nonzero()``) costs about 35 ms for 4096 × 4096 on two cores, several
times the one read of the scores it needs; the compiled kernel (``_row_topk.cpp``) does it
in two vectorised reads, a count and a write. NaN counts as not below any bound, so a
top-k over the result ranks NaN highest, as ``torch.topk`` over the whole matrix does.
"""

from __future__ import annotations

import torch

from saecore_sae_topk.native_kernels import ENTRIES_NOT_BELOW_OP, threads_for


def kernel_applies(scores: torch.Tensor) -> bool:
    """True for a 2-D float32 CPU matrix of contiguous rows (possibly spaced apart) below 2**31 columns."""
    return (
        ENTRIES_NOT_BELOW_OP is not None
        and scores.device.type == "cpu"
        and scores.dtype == torch.float32
        and scores.dim() == 2
        and 1 <= scores.shape[1] < 2**31
        and scores.stride(1) == 1
        and scores.stride(0) >= scores.shape[1]
    )


@torch.no_grad()
def entries_not_below(scores: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positions, values)`` of the entries ``v`` of ``scores [N, n]`` with ``not v < bound``, row-major.

    ``positions`` are flat, ``row · n + column`` (int64); ``values`` have ``scores``' dtype.
    """
    if ENTRIES_NOT_BELOW_OP is not None and kernel_applies(scores):
        return ENTRIES_NOT_BELOW_OP(scores, bound, threads_for(scores.shape[0]))
    flat = scores.reshape(-1)
    positions = (flat < bound).logical_not_().nonzero().squeeze(1)
    return positions, flat[positions]
