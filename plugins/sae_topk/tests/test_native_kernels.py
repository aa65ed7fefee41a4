"""The compiled kernels are present where the package was built with a compiler."""

from __future__ import annotations

import os

import pytest
from saecore_sae_topk import native_kernels


def test_the_kernels_were_built() -> None:
    """The extensions are optional at install time, so a broken build would otherwise pass unseen."""
    if os.environ.get("SAECORE_ALLOW_NO_TOPK_KERNEL") == "1":
        pytest.skip("SAECORE_ALLOW_NO_TOPK_KERNEL=1: testing the torch fallbacks only")
    kernels = {"_row_topk": native_kernels.ROW_TOPK, "_code_dots": native_kernels.CODE_DOTS}
    missing = [name for name, module in kernels.items() if module is None]
    assert not missing, (
        f"saecore_sae_topk kernels not built: {missing} (no C++ compiler when the package was installed?); "
        "set SAECORE_ALLOW_NO_TOPK_KERNEL=1 to test without them"
    )
    assert native_kernels.kernel_instruction_set() in {"avx512f", "avx2", "generic"}


@pytest.mark.parametrize(("rows", "requested", "expected"), [(4096, 2, 2), (100, 8, 1), (10, 4, 1), (640, 16, 10)])
def test_few_rows_get_few_threads(rows: int, requested: int, expected: int) -> None:
    assert native_kernels.threads_for(rows, requested) == expected
