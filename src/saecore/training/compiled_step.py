"""The training forward pass under ``torch.compile``.

Compiling the step the trainer calls (the SAE's ``training_forward_pass``, or DDP around
it) lets inductor fuse the elementwise work between the matmuls, forward and backward,
into a few loops, instead of one pass over a ``[batch, d_sae]`` tensor per operator, which
makes dense steps faster (docs/training_fast_paths.md). The first step pays the
compilation (seconds with an empty inductor cache), and one more compilation follows when
a coefficient warm-up first changes a coefficient (its value then becomes a graph input
instead of a constant) or on the first logging step. TopK compiles only in pieces between
graph breaks (its sparse codes, data-dependent shapes), gains nothing and doubles its
peak memory, so compiling is off by default.

Inductor needs a C++ compiler on the CPU (``$CXX``, else ``g++``; ``clang++`` on macOS,
``cl`` on Windows) and Triton on GPUs; without one, asking for compilation is refused
before training starts rather than failing inside the first step.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

import torch

from saecore.distributed.data_parallel import TrainingStep
from saecore.errors import ConfigError

FIELD = "compile_training_step"


def _default_cxx() -> str:
    if sys.platform == "win32":
        return "cl"
    return "clang++" if sys.platform == "darwin" else "g++"


def compile_unavailable_reason(device: torch.device) -> str | None:
    """Why torch.compile's default backend cannot build kernels for ``device`` here (None if it can)."""
    if device.type == "cpu":
        compiler = os.environ.get("CXX", _default_cxx())
        if shutil.which(compiler) is None:
            return f"torch.compile needs a C++ compiler for CPU kernels and {compiler!r} is not on PATH (set CXX)"
        return None
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "torch.compile needs Triton for CUDA kernels and it is not installed"
    return None


def compiled_training_step(
    step: TrainingStep, device: torch.device, *, enabled: bool, mode: str | None = None, backend: str = "inductor"
) -> TrainingStep:
    """``step`` under ``torch.compile(mode=mode, backend=backend)`` when ``enabled``; ``step`` itself otherwise.

    Only the inductor backend builds kernels, so only it needs a compiler.
    """
    if not enabled:
        return step
    reason = compile_unavailable_reason(device) if backend == "inductor" else None
    if reason is not None:
        raise ConfigError(f"{FIELD}=True: {reason}; install one or set {FIELD}=False")
    compiled: TrainingStep = torch.compile(step, mode=mode, backend=backend)
    return compiled
