"""The package's compiled CPU kernels, and how many threads a call to one of them gets.

Both are C++ extensions built when the package is installed, and both are optional:
without a C++ compiler the package installs without them, and each caller falls back to
the torch operations it replaces (same results, slower; see README "Performance").
"""

from __future__ import annotations

from types import ModuleType

import torch

try:
    from saecore_sae_topk import _row_topk
except ImportError:  # installed without a compiler
    _row_topk = None
try:
    from saecore_sae_topk import _code_dots
except ImportError:  # installed without a compiler
    _code_dots = None

ROW_TOPK: ModuleType | None = _row_topk
"""Exact per-row top-k (``_row_topk.cpp``), or None."""

CODE_DOTS: ModuleType | None = _code_dots
"""Decoder-row dot products of sparse codes (``_code_dots.cpp``), or None."""

ROWS_PER_THREAD = 64
"""Fewer rows than this per thread and starting a thread costs more than it saves."""


def threads_for(n_rows: int, threads: int | None = None) -> int:
    """Threads for a call over ``n_rows`` rows: ``threads`` (default torch's intra-op count), fewer for few rows."""
    wanted = torch.get_num_threads() if threads is None else threads
    return max(1, min(wanted, n_rows // ROWS_PER_THREAD))


def kernel_instruction_set() -> str | None:
    """``"avx512f"``, ``"avx2"`` or ``"generic"``: what the top-k kernel runs on this CPU; None without it."""
    return None if ROW_TOPK is None else str(ROW_TOPK.instruction_set())
