"""The compiled top-k kernel against a float64 sort, and its fallback to torch.topk."""

from __future__ import annotations

import pytest
import torch
from saecore_sae_topk.native_kernels import ROW_TOPK
from saecore_sae_topk.row_topk import kernel_applies, row_topk

needs_kernel = pytest.mark.skipif(ROW_TOPK is None, reason="saecore-sae-topk was installed without its kernels")


def reference_topk_values(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest of each row, in descending order, by a float64 sort."""
    return scores.double().sort(dim=-1, descending=True).values[..., :k]


def check_against_reference(scores: torch.Tensor, k: int, values: torch.Tensor, indices: torch.Tensor) -> None:
    assert values.shape == indices.shape == (*scores.shape[:-1], k)
    assert indices.dtype == torch.int64 and values.dtype == scores.dtype
    # The same multiset of values as the float64 reference (exactly: they are copies).
    assert torch.equal(values.double().sort(dim=-1, descending=True).values, reference_topk_values(scores, k))
    # Each value sits at its index, and no index is taken twice.
    assert torch.equal(scores.gather(-1, indices), values)
    assert torch.equal(indices.sort(dim=-1).values.diff(dim=-1).gt(0), torch.ones_like(indices[..., 1:], dtype=bool))


@needs_kernel
@pytest.mark.parametrize(
    ("shape", "k"),
    [
        ((512, 4096), 32),  # the benchmark's row: 64 groups of 64
        ((64, 1000), 7),  # n not a multiple of the 16 groups
        ((16, 512), 32),  # the shortest rows that still use groups: eight entries each
        ((16, 511), 32),  # one entry fewer: the bucket route
        ((64, 4915), 384),  # AuxK's shape with 20% of 24576 dead: buckets
        ((64, 819), 256),  # AuxK's shape with 20% dead: the bucket route
        ((37, 300), 1),
        ((3, 5), 5),  # k = n
        ((1, 1), 1),
        ((2, 33, 512), 16),  # leading dimensions are flattened
        ((4096,), 10),  # one row
    ],
)
def test_the_kernel_matches_a_float64_sort(shape: tuple[int, ...], k: int) -> None:
    generator = torch.Generator().manual_seed(k * 1000 + shape[-1])
    scores = torch.randn(shape, generator=generator)
    assert kernel_applies(scores, k)
    values, indices = row_topk(scores, k)
    check_against_reference(scores, k, values, indices)


@needs_kernel
@pytest.mark.parametrize("n", [64, 819, 4096])
def test_ties_keep_the_right_values(n: int) -> None:
    """Scores from {0, …, 4}: thousands of ties at the k-th value, which any tied entry may fill."""
    scores = torch.randint(0, 5, (200, n), generator=torch.Generator().manual_seed(n)).float()
    values, indices = row_topk(scores, 16)
    check_against_reference(scores, 16, values, indices)


@needs_kernel
@pytest.mark.parametrize(
    "make_rows",
    [
        lambda g: torch.full((4, 819), 0.25),  # one value: every entry ties
        lambda g: torch.cat([torch.randn(4, 818, generator=g) * 1e-6, torch.full((4, 1), 1e3)], dim=1),  # one bucket
        lambda g: torch.randn(4, 819, generator=g).sign() * 3e38,  # max − min overflows: the whole-row fallback
        lambda g: torch.randn(4, 819, generator=g).round(decimals=1),  # ties across bucket edges
    ],
    ids=["constant", "clustered", "range-overflow", "rounded"],
)
def test_the_bucket_route_handles_degenerate_rows(make_rows) -> None:  # type: ignore[no-untyped-def]
    """AuxK's shape (256 of 819) buckets each row by value; rows that defeat the buckets."""
    scores = make_rows(torch.Generator().manual_seed(6))
    values, indices = row_topk(scores, 256)
    check_against_reference(scores, 256, values, indices)


@needs_kernel
def test_nan_and_infinities_rank_as_torch_topk_ranks_them() -> None:
    """NaN above everything, then +inf; a row of -inf and NaN still yields k entries."""
    scores = torch.randn(6, 256, generator=torch.Generator().manual_seed(1))
    scores[0, [3, 70, 200]] = float("nan")
    scores[1, [5, 6]] = float("inf")
    scores[2, :] = float("-inf")
    scores[2, 10] = float("nan")
    scores[3, 100:] = float("-inf")
    scores[4, ::2] = float("nan")  # more NaN than k
    values, indices = row_topk(scores, 8)
    expected = scores.topk(8, dim=-1).values
    torch.testing.assert_close(values.sort(dim=-1).values, expected.sort(dim=-1).values, rtol=0, atol=0,
                               equal_nan=True)
    torch.testing.assert_close(scores.gather(-1, indices), values, rtol=0, atol=0, equal_nan=True)
    assert all(row.unique().numel() == 8 for row in indices)


@needs_kernel
def test_results_do_not_depend_on_the_thread_count() -> None:
    scores = torch.randn(1024, 2048, generator=torch.Generator().manual_seed(2))
    one_thread = row_topk(scores, 24, threads=1)
    four_threads = row_topk(scores, 24, threads=4)
    assert torch.equal(one_thread[0], four_threads[0]) and torch.equal(one_thread[1], four_threads[1])


@needs_kernel
def test_a_column_slice_is_read_in_place() -> None:
    wide = torch.randn(128, 1200, generator=torch.Generator().manual_seed(3))
    scores = wide[:, 100:900]
    assert not scores.is_contiguous() and kernel_applies(scores, 20)
    values, indices = row_topk(scores, 20)
    check_against_reference(scores, 20, values, indices)


@pytest.mark.parametrize(
    "scores",
    [
        torch.randn(64, 300, dtype=torch.float64),  # not float32
        torch.randn(300, 64).t(),  # rows not contiguous
        torch.randn(4, 64, 300)[:, :, :200],  # 3-D with spaced rows
    ],
    ids=["float64", "transposed", "3d-slice"],
)
def test_what_the_kernel_cannot_read_goes_to_torch_topk(scores: torch.Tensor) -> None:
    assert not kernel_applies(scores, 10)
    values, indices = row_topk(scores, 10)
    check_against_reference(scores, 10, values, indices)


def test_values_carry_the_gradient_to_the_scores() -> None:
    scores = torch.randn(32, 512, generator=torch.Generator().manual_seed(4), requires_grad=True)
    weights = torch.randn(32, 16, generator=torch.Generator().manual_seed(5))
    values, indices = row_topk(scores, 16)
    (values * weights).sum().backward()
    assert scores.grad is not None
    expected = torch.zeros(32, 512).scatter_(-1, indices, weights)
    assert torch.equal(scores.grad, expected)


@needs_kernel
def test_bad_arguments_are_refused_by_the_kernel() -> None:
    assert ROW_TOPK is not None
    with pytest.raises(ValueError, match="1 <= k <= n"):
        ROW_TOPK.select_topk(0, 1, 8, 8, 9, 0, 0, 1)
