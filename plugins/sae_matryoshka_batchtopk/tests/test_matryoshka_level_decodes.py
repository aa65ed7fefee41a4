"""The level decodes over one support against dense per-level products, in float64."""

from __future__ import annotations

import torch
from saecore_sae_matryoshka_batchtopk.level_decodes import level_decodes

from saecore.sparse import Support


def test_values_and_gradients_match_dense_level_products_with_an_empty_level() -> None:
    generator = torch.Generator().manual_seed(4)
    n_rows, d_sae, d_in, widths = 7, 24, 5, [4, 10, 24]
    acts = torch.randn(n_rows, d_sae, generator=generator, dtype=torch.float64)
    acts = acts * (torch.rand(n_rows, d_sae, generator=generator) < 0.3)
    acts[:, 4:10] = 0  # the second level keeps nothing
    support = Support.of_nonzeros(acts)
    values = acts.reshape(-1)[support.positions].clone().requires_grad_(True)
    W_dec = torch.randn(d_sae, d_in, generator=generator, dtype=torch.float64, requires_grad=True)
    directions = [torch.randn(n_rows, d_in, generator=generator, dtype=torch.float64) for _ in widths]

    decodes = level_decodes(values, support, W_dec, widths)
    dense = torch.zeros(n_rows * d_sae, dtype=torch.float64).index_put((support.positions,), values)
    dense = dense.view(n_rows, d_sae)
    starts = [0, *widths[:-1]]
    expected = [dense[:, start:stop] @ W_dec[start:stop] for start, stop in zip(starts, widths)]
    for got, want in zip(decodes, expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.count_nonzero(decodes[1]) == 0

    got_grads = torch.autograd.grad(sum((d * u).sum() for d, u in zip(decodes, directions)), (values, W_dec))
    want_grads = torch.autograd.grad(sum((d * u).sum() for d, u in zip(expected, directions)), (values, W_dec))
    for got, want in zip(got_grads, want_grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
