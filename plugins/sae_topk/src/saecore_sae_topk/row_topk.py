"""Exact top-k along the last dimension: the compiled ``_row_topk`` kernel on CPU, else ``torch.topk``.

``torch.topk`` on CPU partially sorts a copy of every row, about a sixth of a TopK
training step; the kernel bounds each row's k-th value by group maxima and sorts only the
few entries above the bound (see ``_row_topk.cpp``; timings in docs/benchmarks.md). Both give
the same set of values, NaN ranked highest; where several entries tie at the k-th value,
which of them is chosen can differ. The kernel is built when the package is installed and
is optional (``native_kernels``): without it every call takes ``torch.topk``.
"""

from __future__ import annotations

import torch

from saecore_sae_topk.native_kernels import ROW_TOPK, ROW_TOPK_OP, threads_for


def kernel_applies(scores: torch.Tensor, k: int) -> bool:
    """True when the kernel can select from ``scores``.

    That is float32 on CPU with ``1 <= k <= n``, laid out as rows: contiguous, or a 2-D
    matrix whose rows are contiguous but spaced apart (a column slice of a wider one).
    """
    if ROW_TOPK is None or scores.device.type != "cpu" or scores.dtype != torch.float32 or scores.dim() == 0:
        return False
    n = scores.shape[-1]
    rows_laid_out = scores.is_contiguous() or (scores.dim() == 2 and scores.stride(1) == 1 and scores.stride(0) >= n)
    return 1 <= k <= n < 2**31 and rows_laid_out


def row_topk(scores: torch.Tensor, k: int, threads: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of each row of ``scores`` (last dimension): ``(values, indices)``, unordered.

    Values carry gradient to ``scores`` when it requires one. ``threads`` defaults to
    torch's intra-op thread count.
    """
    if ROW_TOPK_OP is None or not kernel_applies(scores, k):
        return scores.topk(k, dim=-1, sorted=False)
    values, indices = ROW_TOPK_OP(scores.detach(), k, threads_for(scores.numel() // scores.shape[-1], threads))
    if scores.requires_grad and torch.is_grad_enabled():
        values = scores.gather(-1, indices)
    return values, indices
