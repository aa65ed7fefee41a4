"""The compiled listing of a matrix's entries not below a bound, against a float64 reference and torch's fallback."""

from __future__ import annotations

import pytest
import torch
from saecore_sae_topk.entries_not_below import entries_not_below, kernel_applies
from saecore_sae_topk.native_kernels import ROW_TOPK

needs_kernel = pytest.mark.skipif(ROW_TOPK is None, reason="saecore-sae-topk was installed without its kernels")


def reference_entries(scores: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-major flat positions and values of the entries ``v`` with ``not v < bound``, compared in float64."""
    flat = scores.double().reshape(-1)
    positions = torch.tensor([i for i, v in enumerate(flat.tolist()) if not v < bound], dtype=torch.int64)
    return positions, flat[positions]


def scores_of(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def with_special_values(scores: torch.Tensor) -> torch.Tensor:
    """NaN (counts as not below any bound), both infinities, and a value equal to the bound 0.5."""
    scores = scores.clone()
    scores[0, 0], scores[1, -1], scores[-1, 3], scores[2, 5] = float("nan"), float("inf"), float("-inf"), 0.5
    return scores


@needs_kernel
@pytest.mark.parametrize(
    "scores",
    [
        scores_of(32, 4096),  # the benchmark's rows: whole 16-wide vectors
        with_special_values(scores_of(70, 1003)),  # a tail of 11 after the vectors, and NaN/inf
        scores_of(64, 700)[:, 100:613],  # a column slice, read in place
        scores_of(5, 3),  # rows shorter than a vector
        torch.full((96, 40), -2.0),  # no entry at all
    ],
)
def test_the_kernel_lists_the_float64_reference_entries_row_major(scores: torch.Tensor) -> None:
    assert kernel_applies(scores)
    positions, values = entries_not_below(scores, 0.5)
    expected_positions, expected_values = reference_entries(scores, 0.5)
    assert positions.dtype == torch.int64 and values.dtype == scores.dtype
    assert torch.equal(positions, expected_positions)
    torch.testing.assert_close(values.double(), expected_values, rtol=0, atol=0, equal_nan=True)


def test_the_torch_fallback_lists_the_same_entries_for_other_dtypes() -> None:
    scores = with_special_values(scores_of(30, 50)).double()
    assert not kernel_applies(scores)
    positions, values = entries_not_below(scores, 0.5)
    expected_positions, expected_values = reference_entries(scores, 0.5)
    assert torch.equal(positions, expected_positions)
    torch.testing.assert_close(values, expected_values, rtol=0, atol=0, equal_nan=True)
