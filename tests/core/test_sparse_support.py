"""The support route's pieces against dense float64 products written out in the test.

``Support`` lists the entries a step needs; ``decode_support`` and ``support_preactivations``
must give the dense products' values and gradients restricted to those entries, and
``support_route_possible`` must refuse the cases the route cannot reproduce.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from saecore import TrainingSAE
from saecore.sparse.decode import decode_support
from saecore.sparse.encoder import support_preactivations
from saecore.sparse.route import (
    SPARSE_TRAINING_MAX_DENSITY,
    clearly_dense,
    sparse_enough,
    sparse_route_support,
    support_route_possible,
)
from saecore.sparse.support import Support, per_row_sum
from saecore.training_sae import TrainStepInput

from .sparse_helpers import generator, random_standard_sae

BATCH, D_IN, D_SAE = 64, 16, 96


def sparse_pattern(seed: int = 0, density: float = 0.04) -> torch.Tensor:
    """A ``[BATCH, D_SAE]`` boolean pattern with some empty rows, so empty bags are covered."""
    pattern = torch.rand(BATCH, D_SAE, generator=generator(seed)) < density
    pattern[[0, 5, BATCH - 1]] = False
    return pattern


def make_sae(**cfg: Any) -> TrainingSAE[Any]:
    return random_standard_sae(D_IN, D_SAE, 10, **cfg)


def test_support_lists_entries_row_major_with_row_starts_and_latent_order() -> None:
    selector = torch.tensor([[0.0, 2.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 4.0]])
    support = Support.of_nonzeros(selector)
    assert support.rows.tolist() == [0, 0, 2, 2]
    assert support.latents.tolist() == [1, 3, 0, 3]
    assert support.starts.tolist() == [0, 2, 2]
    assert (support.size, support.n_rows, support.d_sae) == (4, 3, 4)
    order, latent_starts = support.by_latent()
    assert support.latents[order].tolist() == [0, 1, 3, 3]
    assert latent_starts.tolist() == [0, 1, 2, 2]


def test_a_three_dimensional_selector_is_flattened_row_by_row() -> None:
    selector = sparse_pattern().reshape(4, BATCH // 4, D_SAE)
    support = Support.of_nonzeros(selector)
    expected_rows, expected_latents = sparse_pattern().nonzero(as_tuple=True)
    assert torch.equal(support.rows, expected_rows) and torch.equal(support.latents, expected_latents)


def test_sums_by_latent_and_by_row_are_the_dense_sums() -> None:
    pattern = sparse_pattern()
    support = Support.of_nonzeros(pattern)
    weights = torch.randn(support.size, generator=generator(1), dtype=torch.float64)
    rows = torch.randn(BATCH, D_IN, generator=generator(2), dtype=torch.float64)
    dense = torch.zeros(BATCH, D_SAE, dtype=torch.float64)
    dense[pattern] = weights  # boolean indexing is row-major, as the support is
    torch.testing.assert_close(support.sum_rows_by_latent(weights, rows), dense.T @ rows, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(per_row_sum(weights, support), dense.sum(-1), rtol=1e-12, atol=1e-12)


def test_decode_support_values_and_gradients_are_the_dense_products() -> None:
    pattern = sparse_pattern()
    support = Support.of_nonzeros(pattern)
    values = torch.randn(support.size, generator=generator(3), dtype=torch.float64, requires_grad=True)
    W_dec = torch.randn(D_SAE, D_IN, generator=generator(4), dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(BATCH, D_IN, generator=generator(5), dtype=torch.float64)

    values_ref = values.detach().clone().requires_grad_(True)
    W_dec_ref = W_dec.detach().clone().requires_grad_(True)
    dense = torch.zeros(BATCH, D_SAE, dtype=torch.float64).masked_scatter(pattern, values_ref)
    expected = dense @ W_dec_ref
    (expected * upstream).sum().backward()

    decoded = decode_support(values, support, W_dec)
    (decoded * upstream).sum().backward()
    torch.testing.assert_close(decoded, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(values.grad, values_ref.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(W_dec.grad, W_dec_ref.grad, rtol=1e-12, atol=1e-12)
    assert decoded[[0, 5, BATCH - 1]].abs().sum() == 0


@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_support_preactivations_give_the_encoder_gradients_of_those_entries(apply_b_dec: bool) -> None:
    sae = make_sae(apply_b_dec_to_input=apply_b_dec)
    x = torch.randn(BATCH, D_IN, generator=generator(6), dtype=torch.float64)
    pattern = sparse_pattern()
    support = Support.of_nonzeros(pattern)
    upstream = torch.randn(support.size, generator=generator(7), dtype=torch.float64)
    ref = {name: p.detach().clone().requires_grad_(True) for name, p in sae.named_parameters()}
    x_c = x - ref["b_dec"] if apply_b_dec else x
    expected = (x_c @ ref["W_enc"] + ref["b_enc"])[pattern]
    (expected * upstream).sum().backward()

    sae_in = (x - sae.b_dec if apply_b_dec else x).detach()
    with torch.no_grad():
        hidden_pre = sae_in @ sae.W_enc + sae.b_enc
    got = support_preactivations(sae, sae_in, hidden_pre, support)
    (got * upstream).sum().backward()
    torch.testing.assert_close(got, expected.detach(), rtol=1e-12, atol=1e-12)
    for name in ("W_enc", "b_enc", "b_dec"):
        want = ref[name].grad if ref[name].grad is not None else torch.zeros_like(ref[name])
        got_grad = getattr(sae, name).grad
        if not apply_b_dec and name == "b_dec":
            assert got_grad is None
            continue
        torch.testing.assert_close(got_grad, want, rtol=1e-10, atol=1e-12, msg=name)


def test_density_limit() -> None:
    acts = torch.zeros(BATCH, D_SAE)
    limit = int(SPARSE_TRAINING_MAX_DENSITY * acts.numel())
    assert sparse_enough(limit, acts)
    assert not sparse_enough(limit + 1, acts)


def test_only_a_batch_far_over_the_limit_is_judged_dense_by_its_sample() -> None:
    rows = torch.arange(BATCH).unsqueeze(1)
    latents = torch.arange(D_SAE)
    assert not clearly_dense(torch.zeros(BATCH, D_SAE))
    at_limit = ((latents + rows) % 16 == 0).float()  # exactly 1/16 dense in every row
    assert not clearly_dense(at_limit)
    assert clearly_dense(((latents + rows) % 4 == 0).float())


def test_firing_counts_count_each_latent_s_rows() -> None:
    pattern = sparse_pattern()
    support = Support.of_nonzeros(pattern)
    assert torch.equal(support.firing_counts(), pattern.sum(0))
    keep = torch.arange(support.size) % 2 == 0
    only_kept = torch.zeros_like(pattern)
    only_kept[support.rows[keep], support.latents[keep]] = True
    assert torch.equal(support.firing_counts(keep), only_kept.sum(0))


def test_support_at_positions_is_the_support_of_those_entries() -> None:
    pattern = sparse_pattern()
    positions = pattern.reshape(-1).nonzero().squeeze(1)
    by_positions = Support.at_positions(positions, BATCH, D_SAE)
    of_pattern = Support.of_nonzeros(pattern)
    for name in ("rows", "latents", "positions", "starts"):
        assert torch.equal(getattr(by_positions, name), getattr(of_pattern, name)), name


def test_support_of_entries_in_any_order_within_rows_decodes_and_differentiates_as_the_sorted_one() -> None:
    pattern = sparse_pattern()
    rows, latents = pattern.nonzero(as_tuple=True)
    per_row = pattern.sum(1)
    reversed_in_rows = torch.cat([
        torch.arange(start, start + count).flip(0) for start, count in zip((per_row.cumsum(0) - per_row).tolist(),
                                                                          per_row.tolist())
    ])
    values = torch.randn(rows.numel(), dtype=torch.float64, generator=generator(3))
    W_dec = torch.randn(D_SAE, D_IN, dtype=torch.float64, generator=generator(4))
    grad = torch.randn(BATCH, D_IN, dtype=torch.float64, generator=generator(5))
    results = []
    for order in (torch.arange(rows.numel()), reversed_in_rows):
        support = Support.of_entries(rows[order], latents[order], BATCH, D_SAE)
        leaf_values = values[order].clone().requires_grad_(True)
        leaf_W_dec = W_dec.clone().requires_grad_(True)
        decoded = decode_support(leaf_values, support, leaf_W_dec)
        (decoded * grad).sum().backward()
        assert leaf_values.grad is not None
        results.append((support.starts, decoded.detach(), leaf_values.grad[order.argsort()], leaf_W_dec.grad))
    for sorted_result, any_order_result in zip(*results):
        torch.testing.assert_close(any_order_result, sorted_result, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("start", "stop"), [(0, 7), (7, 30), (30, D_SAE), (0, D_SAE), (5, 5)])
def test_a_latent_range_of_a_support_is_the_support_of_those_entries_with_the_same_order_by_latent(
    start: int, stop: int
) -> None:
    support = Support.of_nonzeros(sparse_pattern())
    part, entries = support.of_latent_range(start, stop)
    in_range = (support.latents >= start) & (support.latents < stop)
    assert torch.equal(entries, in_range.nonzero().squeeze(1))
    fresh = Support.of_entries(support.rows[in_range], support.latents[in_range], BATCH, D_SAE)
    for name in ("rows", "latents", "starts"):
        assert torch.equal(getattr(part, name), getattr(fresh, name)), name
    for mine, sorted_anew in zip(part.by_latent(), fresh.by_latent()):
        assert torch.equal(mine, sorted_anew)


def test_the_route_is_refused_where_it_cannot_reproduce_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    sae = make_sae()
    x = torch.randn(BATCH, D_IN, dtype=torch.float64)
    step = TrainStepInput(x, {"l1": 1.0}, None, 0)
    assert support_route_possible(sae, step)
    with torch.no_grad():
        assert not support_route_possible(sae, step)
    assert not support_route_possible(sae, TrainStepInput(x.clone().requires_grad_(True), {"l1": 1.0}, None, 0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not support_route_possible(sae, step)
    handle = sae.hook_sae_acts_post.add_hook(lambda acts, hook: acts * 2)
    assert not support_route_possible(sae, step)
    handle.remove()
    assert support_route_possible(sae, step)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not support_route_possible(sae, step)


def test_the_route_sequence_gives_the_support_only_when_possible_and_sparse_enough() -> None:
    sae = make_sae()
    x = torch.randn(BATCH, D_IN, generator=generator(3), dtype=torch.float64)
    step = TrainStepInput(x, {"l1": 1.0}, None, 0)
    sparse = torch.rand(BATCH, D_SAE, generator=generator(4), dtype=torch.float64) * sparse_pattern(4)
    support = sparse_route_support(sae, step, sparse)
    assert support is not None and torch.equal(support.positions, sparse.reshape(-1).nonzero().squeeze(1))
    assert sparse_route_support(sae, step, torch.ones(BATCH, D_SAE, dtype=torch.float64)) is None
    with torch.no_grad():
        assert sparse_route_support(sae, step, sparse) is None
    # The architecture's own listing decides the exact density test: here too many entries.
    everything = Support.of_nonzeros(torch.ones(BATCH, D_SAE))
    assert sparse_route_support(sae, step, sparse, lambda: everything) is None
    assert sparse_route_support(sae, step, sparse, lambda: support) is support
    assert sparse_route_support(sae, step, sparse, lambda: None) is None  # the architecture wants the dense step
    asked: list[bool] = []
    with torch.no_grad():  # the route is impossible: the architecture's own listing is never asked for
        assert sparse_route_support(sae, step, sparse, lambda: asked.append(True) or support) is None
    assert asked == []


def test_a_support_of_codes_is_the_support_of_their_entries() -> None:
    codes = torch.tensor([[3, 1], [0, 2], [1, 3]])
    dense = torch.zeros(3, 4).scatter_(1, codes, 1.0)
    of_codes = Support.of_codes(codes, 4)
    of_nonzeros = Support.of_nonzeros(dense)
    assert (of_codes.size, of_codes.n_rows, of_codes.d_sae) == (6, 3, 4)
    assert of_codes.rows.tolist() == [0, 0, 1, 1, 2, 2]
    assert of_codes.starts.tolist() == of_nonzeros.starts.tolist() == [0, 2, 4]
    assert sorted(of_codes.positions.tolist()) == of_nonzeros.positions.tolist()
    assert of_codes.firing_counts().tolist() == of_nonzeros.firing_counts().tolist() == [1, 2, 1, 2]


def test_a_code_row_dots_kernel_is_tried_first_and_may_decline() -> None:
    codes = torch.tensor([[3, 1], [0, 2]])
    grad = torch.randn(2, D_IN, generator=generator(5), dtype=torch.float64)
    W_dec = torch.randn(4, D_IN, generator=generator(6), dtype=torch.float64)
    expected = torch.einsum("nd,nkd->nk", grad, W_dec[codes]).reshape(-1)
    kernel_calls: list[tuple[int, ...]] = []

    def declining(g: torch.Tensor, w: torch.Tensor, latents: torch.Tensor) -> torch.Tensor | None:
        kernel_calls.append(tuple(latents.shape))
        return None

    torch.testing.assert_close(Support.of_codes(codes, 4, declining).row_dots(grad, W_dec), expected)
    assert kernel_calls == [(2, 2)]
    fixed = Support.of_codes(codes, 4, lambda g, w, latents: torch.full(latents.shape, 7.0, dtype=torch.float64))
    assert fixed.row_dots(grad, W_dec).tolist() == [7.0] * 4


def test_a_support_without_rows_or_codes_says_what_it_needs() -> None:
    support = Support(torch.tensor([0, 2]), n_rows=2, d_sae=4)
    with pytest.raises(ValueError, match=r"Support\.of_codes"):
        _ = support.rows
