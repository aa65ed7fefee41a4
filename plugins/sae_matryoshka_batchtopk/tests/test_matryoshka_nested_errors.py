"""The fused nested errors against the per-level operations they replace, in float64."""

from __future__ import annotations

import pytest
import torch
from saecore_sae_matryoshka_batchtopk.nested_errors import nested_errors

from saecore.training_sae import mse_loss


def inputs(levels: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(levels)
    b_dec = torch.randn(6, generator=generator, dtype=torch.float64, requires_grad=True)
    x = torch.randn(9, 6, generator=generator, dtype=torch.float64)
    decodes = [torch.randn(9, 6, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(levels)]
    return b_dec, x, decodes


def reference(b_dec: torch.Tensor, x: torch.Tensor, decodes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    prefix, errors = b_dec, []
    for decode in decodes:
        prefix = prefix + decode
        errors.append(mse_loss(prefix, x))
    return torch.stack(errors[:-1]) if len(errors) > 1 else prefix.new_zeros(0), prefix


@pytest.mark.parametrize("levels", [1, 2, 4])
def test_values_and_gradients_match_the_per_level_operations(levels: int) -> None:
    b_dec, x, decodes = inputs(levels)
    errors, recons = nested_errors(b_dec, x, decodes)
    expected_errors, expected_recons = reference(b_dec, x, decodes)
    torch.testing.assert_close(errors, expected_errors, rtol=1e-12, atol=0)
    torch.testing.assert_close(recons, expected_recons, rtol=0, atol=0)
    # A loss weighing every error and the reconstruction differently, as a step's total does through its terms.
    weights = torch.arange(1.0, levels, dtype=torch.float64)
    direction = torch.randn(9, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    params = [b_dec, *decodes]
    got = torch.autograd.grad((errors * weights).sum() + (recons * direction).sum(), params)
    want = torch.autograd.grad((expected_errors * weights).sum() + (expected_recons * direction).sum(), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_gradcheck() -> None:
    b_dec, x, decodes = inputs(3)
    assert torch.autograd.gradcheck(lambda b, *d: nested_errors(b, x, list(d)), (b_dec, *decodes))
