"""The sparse-code helpers against dense float64 computations of the same sums."""

from __future__ import annotations

import pytest
import torch
from saecore_sae_topk.sparse_codes import (
    code_support,
    codes_to_sparse_coo,
    decode_codes,
    decode_dense_activations,
    decode_sparse_activations,
    scatter_codes,
)

from saecore.testing import MatmulCounter

D_IN, D_SAE, K = 8, 32, 3


def _codes(*lead: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(*lead, D_SAE, generator=gen, dtype=torch.float64)
    indices = scores.argsort(dim=-1)[..., :K]
    values = torch.randn(*lead, K, generator=gen, dtype=torch.float64)
    return values, indices


def _dense(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    dense = torch.zeros(*values.shape[:-1], D_SAE, dtype=torch.float64)
    for position in torch.cartesian_prod(*(torch.arange(s) for s in values.shape[:-1])).reshape(-1, values.dim() - 1):
        row = tuple(position.tolist())
        for j in range(K):
            dense[(*row, int(indices[row][j]))] += values[row][j]
    return dense


def _W_dec(seed: int = 1) -> torch.Tensor:
    return torch.randn(D_SAE, D_IN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("lead", [(5,), (2, 3)])
def test_scatter_decode_and_coo_agree_with_dense(lead: tuple[int, ...]) -> None:
    values, indices = _codes(*lead)
    dense = _dense(values, indices)
    W_dec = _W_dec()
    torch.testing.assert_close(scatter_codes(values, indices, D_SAE), dense, rtol=0, atol=0)
    torch.testing.assert_close(decode_codes(values, indices, W_dec), dense @ W_dec, rtol=1e-12, atol=1e-12)
    coo = codes_to_sparse_coo(values, indices, D_SAE)
    assert coo.is_sparse and coo.is_coalesced() and coo.shape == (*lead, D_SAE)
    torch.testing.assert_close(coo.to_dense(), dense, rtol=0, atol=0)


@pytest.mark.parametrize("density", ["sparse", "dense"])
def test_decode_dense_activations_either_route(density: str) -> None:
    """Below the density threshold the nonzeros are gathered and no matmul runs; above it one matmul does."""
    gen = torch.Generator().manual_seed(2)
    f = torch.randn(2, 4, D_SAE, generator=gen, dtype=torch.float64)
    if density == "sparse":
        f = f * (torch.rand(f.shape, generator=gen) < 0.02)
        f[0, 1] = 0  # an all-zero row decodes to zero
    inv_norms = torch.rand(D_SAE, generator=gen, dtype=torch.float64) + 0.5
    W_dec = _W_dec()
    with MatmulCounter() as counter:
        scaled = decode_dense_activations(f, W_dec, inv_norms)
        plain = decode_dense_activations(f, W_dec, None)
        from_float32 = decode_dense_activations(f.float(), W_dec, None)  # cast to the decoder's dtype
    assert counter.multiply_adds == ([] if density == "sparse" else [2 * 4 * D_SAE * D_IN] * 3)
    torch.testing.assert_close(scaled, (f * inv_norms) @ W_dec, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(plain, f @ W_dec, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(from_float32, f.float().double() @ W_dec, rtol=1e-12, atol=1e-12)


def test_decode_sparse_activations_three_dimensional() -> None:
    values, indices = _codes(2, 3, seed=3)
    dense = _dense(values, indices)
    dense[1, 2] = 0
    inv_norms = torch.linspace(0.5, 2.0, D_SAE, dtype=torch.float64)
    W_dec = _W_dec(4)
    torch.testing.assert_close(
        decode_sparse_activations(dense.to_sparse(), W_dec, inv_norms), (dense * inv_norms) @ W_dec,
        rtol=1e-12, atol=1e-12,
    )


def test_row_dots_are_the_decoders_gradient_with_respect_to_each_value() -> None:
    """d out[n] / d values[n, j] = W_dec[indices[n, j]], so ∂L/∂values[n, j] = grad[n] · W_dec[indices[n, j]]."""
    _, indices = _codes(6, seed=9)
    W_dec = torch.randn(D_SAE, D_IN, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    grad = torch.randn(6, D_IN, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    expected = torch.einsum("nd,nkd->nk", grad, W_dec[indices])
    dots = code_support(indices, D_SAE).row_dots(grad, W_dec).reshape(indices.shape)
    torch.testing.assert_close(dots, expected, rtol=1e-12, atol=1e-12)


def test_summing_rows_by_latent_is_the_transposed_sparse_product() -> None:
    """out[j] = Σ_n G[n, j] · rows[n], with G the sparse [N, d_sae] matrix the code describes."""
    values, indices = _codes(6, seed=5)
    aux_values, aux_indices = _codes(6, seed=6)
    weights = torch.cat([values, aux_values], dim=1)
    latents = torch.cat([indices, aux_indices], dim=1)  # a latent may appear twice in a row
    rows = torch.randn(6, D_IN, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    G = _dense(values, indices) + _dense(aux_values, aux_indices)
    support = code_support(latents, D_SAE)
    torch.testing.assert_close(support.sum_rows_by_latent(weights, rows), G.T @ rows, rtol=1e-12, atol=1e-12)
    other_rows = torch.randn(6, D_IN, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    other_sums = support.sum_rows_by_latent(weights, other_rows)
    torch.testing.assert_close(other_sums, G.T @ other_rows, rtol=1e-12, atol=1e-12)
