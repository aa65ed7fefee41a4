"""glibc malloc settings that let a CPU training step reuse its large buffers.

By default glibc serves every allocation above its mmap threshold (dynamic, at most
32 MiB) with a fresh ``mmap`` and unmaps it on ``free``. A CPU training step allocates
several ``[batch, d_sae]`` float32 tensors (64 MiB each at 4096 × 4096), so every step
page-faults each of them in again and the kernel zero-fills every page. Raising the mmap
threshold to 1 GiB serves them from the heap, and raising the trim threshold and the top
pad keeps freed heap memory mapped for the next step, which makes dense CPU steps
markedly faster (measurements in docs/training_fast_paths.md).

The cost is memory: the process keeps freed memory (up to 2 GiB above the heap's top)
instead of returning it to the operating system, and the heap fragments, so the peak
resident set grows (up to 1.8× in docs/training_fast_paths.md). The setting is process-wide (it also
applies to whatever else runs in the process), so it is applied once per process. Elsewhere it does nothing
and says why: on CUDA (or any non-CPU device) tensors come from torch's caching
allocator, not malloc; macOS, Windows and musl have no glibc ``mallopt``; and settings
already given through the environment (``MALLOC_*_`` variables, ``GLIBC_TUNABLES``) or
another allocator loaded with ``LD_PRELOAD`` are left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass

import torch

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30
# mallopt takes a C int, so 2 GiB - 1 is the largest trim threshold it can be given.
TRIM_THRESHOLD_BYTES = 2**31 - 1
TOP_PAD_BYTES = 256 << 20
SETTINGS = (
    (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
    (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
    (M_TOP_PAD, TOP_PAD_BYTES),
)
ENVIRONMENT_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


@dataclass(frozen=True)
class MallocTuning:
    """Whether this process's glibc malloc is tuned, and why (or why not)."""

    applied: bool
    reason: str


_applied: MallocTuning | None = None


def glibc_version() -> str | None:
    """``"glibc 2.36"`` on a glibc system, None on any other C library."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return None
    return version if version and version.startswith("glibc") else None


def _reason_not_to_tune(device: torch.device) -> str | None:
    if device.type != "cpu":
        return f"training runs on {device}, whose tensors come from torch's caching allocator, not malloc"
    if glibc_version() is None:
        return f"this platform ({sys.platform}) does not use glibc malloc, which is the only one tuned"
    given = [name for name in ENVIRONMENT_SETTINGS if name in os.environ]
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        given.append("GLIBC_TUNABLES")
    if given:
        return f"the environment already sets {', '.join(given)}; those settings are kept"
    if os.environ.get("LD_PRELOAD", "").strip():
        return f"LD_PRELOAD={os.environ['LD_PRELOAD']} may replace malloc; it is left as it is"
    return None


def tune_malloc(device: torch.device) -> MallocTuning:
    """Apply the settings above once per process when training on the CPU under glibc."""
    global _applied
    if _applied is not None:
        return _applied
    reason = _reason_not_to_tune(device)
    if reason is not None:
        return MallocTuning(applied=False, reason=reason)
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    refused = [str(parameter) for parameter, value in SETTINGS if mallopt(parameter, value) != 1]
    if refused:
        return MallocTuning(applied=False, reason=f"glibc refused mallopt parameter(s) {', '.join(refused)}")
    _applied = MallocTuning(
        applied=True,
        reason=f"{glibc_version()}: mmap threshold 1 GiB, trim threshold 2 GiB, top pad 256 MiB",
    )
    return _applied
