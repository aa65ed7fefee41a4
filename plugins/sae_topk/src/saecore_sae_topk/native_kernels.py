"""The package's compiled CPU kernels as torch operators, and how many threads a call gets.

Both kernels are C++ extensions built when the package is installed, and both are
optional: without a C++ compiler the package installs without them, and each caller
falls back to the torch operations it replaces (same results, slower; see README
"Performance").

Each kernel present is registered as a torch operator (``torch.ops.saecore_topk``):
``row_topk(scores, k, threads) -> (values, indices)``, ``entries_not_below(scores, bound,
threads) -> (positions, values)`` (from the top-k kernel's module) and ``code_dots(grad,
W_dec, latents, threads) -> out``. So torch.compile traces through them (each has a fake
implementation that gives output shapes, also on meta tensors; ``entries_not_below``'s
length depends on the data), ``torch.library.opcheck`` checks them, and the dispatcher runs
them on CPU tensors only. No operator has a derivative of its own: ``row_topk.row_topk``
gives its values a gradient by gathering them from the scores, ``entries_not_below`` serves
a selection, and ``code_dots`` is itself part of a backward pass.

The operators are defined with ``torch.library.Library`` rather than
``torch.library.custom_op``, whose Python wrapper and autograd layer cost about 50-80 µs
more per call. The C++ side stays a plain CPython extension that reads and writes the
tensors' memory in place: it builds without torch's headers and survives torch upgrades,
and the operator adds no copy.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch
from torch.library import Library

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

OPERATOR_NAMESPACE = "saecore_topk"


def threads_for(n_rows: int, threads: int | None = None) -> int:
    """Threads for a call over ``n_rows`` rows: ``threads`` (default torch's intra-op count), fewer for few rows."""
    wanted = torch.get_num_threads() if threads is None else threads
    return max(1, min(wanted, n_rows // ROWS_PER_THREAD))


def kernel_instruction_set() -> str | None:
    """``"avx512f"``, ``"avx2"`` or ``"generic"``: what the top-k kernel runs on this CPU; None without it."""
    return None if ROW_TOPK is None else str(ROW_TOPK.instruction_set())


# -- row_topk ----------------------------------------------------------------------------
def _row_topk_shape(scores: torch.Tensor, k: int) -> tuple[int, ...]:
    return (*scores.shape[:-1], k)


def _row_topk(scores: torch.Tensor, k: int, threads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reads ``scores`` in place: contiguous, or a 2-D matrix of contiguous rows spaced apart."""
    assert ROW_TOPK is not None
    n = scores.shape[-1]
    row_stride = scores.stride(0) if scores.dim() == 2 else n
    values = torch.empty(_row_topk_shape(scores, k), dtype=torch.float32)
    indices = torch.empty(_row_topk_shape(scores, k), dtype=torch.int64)
    ROW_TOPK.select_topk(scores.data_ptr(), scores.numel() // n, row_stride, n, k, values.data_ptr(),
                         indices.data_ptr(), threads)
    return values, indices


def _row_topk_fake(scores: torch.Tensor, k: int, threads: int) -> tuple[torch.Tensor, torch.Tensor]:
    shape = _row_topk_shape(scores, k)
    return scores.new_empty(shape), scores.new_empty(shape, dtype=torch.int64)


# -- entries_not_below -------------------------------------------------------------------
def _entries_not_below(scores: torch.Tensor, bound: float, threads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reads a 2-D float32 ``scores`` of contiguous rows, possibly spaced apart, in place: a count, then a write."""
    assert ROW_TOPK is not None
    n_rows, n = scores.shape
    row_stride = scores.stride(0)
    counts = torch.empty(n_rows, dtype=torch.int64)
    ROW_TOPK.count_not_below(scores.data_ptr(), n_rows, row_stride, n, bound, counts.data_ptr(), threads)
    ends = counts.cumsum(0)
    starts = ends - counts
    size = int(ends[-1]) if n_rows > 0 else 0
    positions = torch.empty(size, dtype=torch.int64)
    values = torch.empty(size, dtype=torch.float32)
    ROW_TOPK.write_not_below(scores.data_ptr(), n_rows, row_stride, n, bound, starts.data_ptr(),
                             positions.data_ptr(), values.data_ptr(), threads)
    return positions, values


def _entries_not_below_fake(scores: torch.Tensor, bound: float, threads: int) -> tuple[torch.Tensor, torch.Tensor]:
    size = torch.library.get_ctx().new_dynamic_size()
    return scores.new_empty(size, dtype=torch.int64), scores.new_empty(size)


# -- code_dots ---------------------------------------------------------------------------
def _code_dots(grad: torch.Tensor, W_dec: torch.Tensor, latents: torch.Tensor, threads: int) -> torch.Tensor:
    """Contiguous float32 ``grad [N, d]``, ``W_dec [n_latents, d]`` and int64 ``latents [N, k]``."""
    assert CODE_DOTS is not None
    n_rows, k = latents.shape
    out = torch.empty(n_rows, k, dtype=torch.float32)
    CODE_DOTS.code_dots(grad.data_ptr(), W_dec.data_ptr(), latents.data_ptr(), out.data_ptr(), n_rows,
                        grad.shape[1], k, W_dec.shape[0], threads)
    return out


def _code_dots_fake(grad: torch.Tensor, W_dec: torch.Tensor, latents: torch.Tensor, threads: int) -> torch.Tensor:
    return grad.new_empty(latents.shape)


def _define_operators() -> Library | None:
    """Define ``torch.ops.saecore_topk.*`` for the kernels that were built; None if none was."""
    if ROW_TOPK is None and CODE_DOTS is None:
        return None
    library = Library(OPERATOR_NAMESPACE, "DEF")
    if ROW_TOPK is not None:
        library.define("row_topk(Tensor scores, int k, int threads) -> (Tensor, Tensor)")
        library.impl("row_topk", _row_topk, "CPU")
        torch.library.register_fake(f"{OPERATOR_NAMESPACE}::row_topk", _row_topk_fake, lib=library)
        library.define("entries_not_below(Tensor scores, float bound, int threads) -> (Tensor, Tensor)")
        library.impl("entries_not_below", _entries_not_below, "CPU")
        torch.library.register_fake(f"{OPERATOR_NAMESPACE}::entries_not_below", _entries_not_below_fake, lib=library)
    if CODE_DOTS is not None:
        library.define("code_dots(Tensor grad, Tensor W_dec, Tensor latents, int threads) -> Tensor")
        library.impl("code_dots", _code_dots, "CPU")
        torch.library.register_fake(f"{OPERATOR_NAMESPACE}::code_dots", _code_dots_fake, lib=library)
    return library


_LIBRARY = _define_operators()  # kept referenced: a Library removes its operators when collected

ROW_TOPK_OP: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = (
    None if ROW_TOPK is None else torch.ops.saecore_topk.row_topk.default
)
"""``torch.ops.saecore_topk.row_topk``: the top-k kernel as a torch operator, or None without it."""

ENTRIES_NOT_BELOW_OP: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = (
    None if ROW_TOPK is None else torch.ops.saecore_topk.entries_not_below.default
)
"""``torch.ops.saecore_topk.entries_not_below``: a matrix's entries not below a bound, or None without the kernel."""

CODE_DOTS_OP: Callable[..., torch.Tensor] | None = (
    None if CODE_DOTS is None else torch.ops.saecore_topk.code_dots.default
)
"""``torch.ops.saecore_topk.code_dots``: the dots kernel as a torch operator, or None without it."""
