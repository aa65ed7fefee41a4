"""The compiled kernels are present where the package was built with a compiler."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from saecore_sae_topk import native_kernels

KERNEL_TESTS = ["test_row_topk.py", "test_code_dots.py", "test_entries_not_below.py"]


def test_the_kernels_were_built() -> None:
    """The extensions are optional at install time, so a broken build would otherwise pass unseen."""
    if os.environ.get("SAECORE_ALLOW_NO_TOPK_KERNEL") == "1":
        pytest.skip("SAECORE_ALLOW_NO_TOPK_KERNEL=1: testing the torch fallbacks only")
    kernels = {
        "_row_topk": native_kernels.ROW_TOPK,
        "_code_dots": native_kernels.CODE_DOTS,
    }
    missing = [name for name, module in kernels.items() if module is None]
    assert not missing, (
        f"saecore_sae_topk kernels not built: {missing} (no C++ compiler when the package was installed?); "
        "set SAECORE_ALLOW_NO_TOPK_KERNEL=1 to test without them"
    )
    assert native_kernels.kernel_instruction_set() in {"avx512f", "avx2", "generic"}


@pytest.mark.parametrize(("rows", "requested", "expected"), [(4096, 2, 2), (100, 8, 1), (10, 4, 1), (640, 16, 10)])
def test_few_rows_get_few_threads(rows: int, requested: int, expected: int) -> None:
    assert native_kernels.threads_for(rows, requested) == expected


@pytest.mark.skipif(native_kernels.ROW_TOPK is None, reason="saecore-sae-topk was installed without its kernels")
@pytest.mark.parametrize(
    ("variable", "value", "expected_set"),
    [
        ("SAECORE_TOPK_KERNEL_ISA", "generic", "generic"),
        ("SAECORE_TOPK_KERNEL_ISA", "avx2", "avx2"),
        ("SAECORE_TOPK_KERNEL_THREADS", "std", None),  # std::threads instead of torch's OpenMP workers
    ],
)
def test_the_other_code_paths_pass_the_kernel_tests(variable: str, value: str, expected_set: str | None) -> None:
    """The kernels pick the widest vector set the CPU has and torch's OpenMP threads; the rest run here on request."""
    env = {**os.environ, variable: value}
    probe = "from saecore_sae_topk.native_kernels import kernel_instruction_set; print(kernel_instruction_set())"
    chosen = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    if expected_set is not None and chosen.stdout.strip() != expected_set:
        pytest.skip(f"this CPU cannot run {expected_set} (got {chosen.stdout.strip()})")
    here = Path(__file__).parent
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *[str(here / name) for name in KERNEL_TESTS]],
        env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
