"""The conformance kit's float64 normalisation references: the properties that define them."""

from __future__ import annotations

import pytest
import torch

from saecore.testing import reference_normalization


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(5, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 1


def test_constant_norm_rescale_gives_every_token_norm_root_d_and_undoes(x: torch.Tensor) -> None:
    x_n, undo = reference_normalization(x, "constant_norm_rescale")
    torch.testing.assert_close(x_n.norm(dim=-1), torch.full((5,), 12**0.5, dtype=torch.float64))
    torch.testing.assert_close(x_n / x, (x_n / x)[:, :1].expand_as(x))  # one factor per token
    torch.testing.assert_close(undo(x_n), x)


def test_layer_norm_centres_and_divides_by_the_unbiased_std_plus_eps(x: torch.Tensor) -> None:
    x_n, undo = reference_normalization(x, "layer_norm")
    torch.testing.assert_close(x_n.mean(dim=-1), torch.zeros(5, dtype=torch.float64))
    sd = x.std(dim=-1, unbiased=True)
    torch.testing.assert_close(x_n.std(dim=-1, unbiased=True), sd / (sd + 1e-5))
    y = torch.randn_like(x)
    torch.testing.assert_close(undo(y), y * sd[:, None] + x.mean(dim=-1, keepdim=True))  # σ without the eps


@pytest.mark.parametrize("mode", ["none", "expected_average_only_in"])
def test_other_modes_leave_the_input_alone(x: torch.Tensor, mode: str) -> None:
    x_n, undo = reference_normalization(x, mode)
    assert x_n is x and undo(x) is x
