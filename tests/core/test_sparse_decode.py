"""Decoding through the nonzeros: both routes against float64, the threshold, and when each is taken.

Which route ran is read from the matrix products: the dense route is one matmul, the
nonzero route none (``embedding_bag`` is a gather and a sum).
"""

from __future__ import annotations

import pytest
import torch

from saecore.sparse.decode import (
    SPARSE_DECODE_MAX_DENSITY,
    decode_product,
    decode_through_nonzeros,
    wants_sparse_decode,
)
from saecore.sparse.rows import latent_runs, sum_rows_by_latent
from saecore.testing import MatmulCounter

D_IN, D_SAE = 8, 64
AT_THRESHOLD = int(SPARSE_DECODE_MAX_DENSITY * D_SAE)  # 4 of 64 nonzeros per row: exactly the threshold density


def activations(*shape: int, per_row: int, seed: int = 0) -> torch.Tensor:
    """Nonnegative float64 activations with ``per_row`` nonzeros per row, at random latents."""
    generator = torch.Generator().manual_seed(seed)
    kept = torch.rand(*shape, D_SAE, generator=generator).topk(per_row, dim=-1).indices
    values = torch.rand(*shape, per_row, generator=generator, dtype=torch.float64) + 0.1
    return torch.zeros(*shape, D_SAE, dtype=torch.float64).scatter_(-1, kept, values)


def decoder(seed: int = 1) -> torch.Tensor:
    return torch.randn(D_SAE, D_IN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def latent_scale() -> torch.Tensor:
    return torch.rand(D_SAE, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.5


def reference_decode(acts: torch.Tensor, W_dec: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ_i acts_i · scale_i · W_dec,i`` in float64, as an elementwise sum rather than a matmul."""
    scaled = acts.double() if scale is None else acts.double() * scale.double()
    return (scaled.unsqueeze(-1) * W_dec.double()).sum(dim=-2)


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("shape", [(6,), (2, 3)])
def test_nonzero_route_matches_float64_reference(shape: tuple[int, ...], scaled: bool) -> None:
    W_dec, scale = decoder(), latent_scale() if scaled else None
    acts = activations(*shape, per_row=5)
    acts[0, ...] = 0  # inputs with no active latent decode to zero, first ...
    acts[-1, ...] = 0  # ... and last
    got = decode_through_nonzeros(acts, W_dec, scale)
    assert got.shape == (*shape, D_IN)
    torch.testing.assert_close(got, reference_decode(acts, W_dec, scale), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize(("per_row", "products"), [(1, 0), (AT_THRESHOLD, 0), (AT_THRESHOLD + 1, 1), (D_SAE, 1)])
def test_the_route_turns_at_the_threshold_and_both_give_the_reference(per_row: int, products: int,
                                                                      scaled: bool) -> None:
    W_dec, scale = decoder(), latent_scale() if scaled else None
    acts = activations(3, 5, per_row=per_row)
    assert wants_sparse_decode(acts, W_dec) == (products == 0)
    with torch.no_grad(), MatmulCounter() as counter:
        got = decode_product(acts, W_dec, scale)
    assert counter.multiply_adds == [3 * 5 * D_SAE * D_IN] * products
    torch.testing.assert_close(got, reference_decode(acts, W_dec, scale), rtol=1e-12, atol=1e-12)


def test_what_the_nonzero_route_refuses() -> None:
    W_dec = decoder()
    sparse = activations(4, per_row=1)
    assert wants_sparse_decode(sparse, W_dec)
    assert not wants_sparse_decode(sparse.float(), W_dec)  # another dtype: the matmul says what is wrong
    assert not wants_sparse_decode(sparse.to_sparse(), W_dec)  # a sparse layout: the matmul handles it
    assert not wants_sparse_decode(activations(0, per_row=1), W_dec)  # nothing to count
    wanting_grad = sparse.clone().requires_grad_(True)
    assert not wants_sparse_decode(wanting_grad, W_dec)
    with torch.no_grad():
        assert wants_sparse_decode(wanting_grad, W_dec)
    assert wants_sparse_decode(sparse, W_dec.clone().requires_grad_(True))  # embedding_bag differentiates W_dec


def test_decoder_and_scale_gradients_through_the_nonzero_route_match_float64() -> None:
    acts = activations(2, 3, per_row=AT_THRESHOLD)
    W_dec, scale = decoder().requires_grad_(True), latent_scale().requires_grad_(True)
    W_ref, scale_ref = W_dec.detach().clone().requires_grad_(True), scale.detach().clone().requires_grad_(True)
    weights = torch.randn(2, 3, D_IN, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with MatmulCounter() as counter:
        (decode_product(acts, W_dec, scale) * weights).sum().backward()
    (reference_decode(acts, W_ref, scale_ref) * weights).sum().backward()
    assert counter.products == []
    torch.testing.assert_close(W_dec.grad, W_ref.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(scale.grad, scale_ref.grad, rtol=1e-12, atol=1e-12)


def test_an_activation_gradient_keeps_the_matmul_and_is_exact() -> None:
    """The gradient is nonzero at the zero activations too, which only the dense product gives."""
    acts = activations(7, per_row=2).requires_grad_(True)
    acts_ref = acts.detach().clone().requires_grad_(True)
    W_dec, scale = decoder(), latent_scale()
    weights = torch.randn(7, D_IN, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with MatmulCounter() as counter:
        (decode_product(acts, W_dec, scale) * weights).sum().backward()
    (reference_decode(acts_ref, W_dec, scale) * weights).sum().backward()
    assert counter.multiply_adds == [7 * D_SAE * D_IN, 7 * D_IN * D_SAE]  # the decode, then its backward
    assert bool((acts_ref.grad != 0).all())
    torch.testing.assert_close(acts.grad, acts_ref.grad, rtol=1e-12, atol=1e-12)


def test_another_dtype_is_left_to_the_matmul_which_refuses_it() -> None:
    with torch.no_grad(), pytest.raises(RuntimeError):
        decode_product(activations(3, per_row=1).float(), decoder())


def test_latent_runs_sort_stably_and_start_where_each_latent_begins() -> None:
    latents = torch.tensor([3, 0, 3, 1, 0, 3])
    order, starts = latent_runs(latents, d_sae=5)
    assert order.tolist() == [1, 4, 3, 0, 2, 5]  # ties keep their original order
    assert starts.tolist() == [0, 2, 3, 3, 6]  # latent 2 and 4 have empty runs


def test_sum_rows_by_latent_is_the_transpose_of_decoding_in_float64() -> None:
    generator = torch.Generator().manual_seed(3)
    n_rows, d_sae, d_in, n_entries = 9, 7, 5, 20
    latents = torch.randint(0, d_sae, (n_entries,), generator=generator)
    source_rows = torch.randint(0, n_rows, (n_entries,), generator=generator)
    weights = torch.randn(n_entries, generator=generator, dtype=torch.float64)
    rows = torch.randn(n_rows, d_in, generator=generator, dtype=torch.float64)
    expected = torch.zeros(d_sae, d_in, dtype=torch.float64)
    for latent, row, weight in zip(latents.tolist(), source_rows.tolist(), weights.tolist()):
        expected[latent] += weight * rows[row]

    torch.testing.assert_close(sum_rows_by_latent(weights, latents, source_rows, rows, d_sae), expected)
    runs = latent_runs(latents, d_sae)
    torch.testing.assert_close(sum_rows_by_latent(weights, latents, source_rows, rows, d_sae, runs), expected)
