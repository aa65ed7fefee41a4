"""The expected_average_only_in scale: estimate, application and state."""

from __future__ import annotations

import math

import pytest
import torch
from training_helpers import ToySource, ToySourceConfig

from saecore.errors import ConfigError
from saecore.training.activation_scaler import ActivationScaler


def test_estimate_is_sqrt_d_in_over_mean_norm_and_consumes_the_batches() -> None:
    cfg = ToySourceConfig(d_in=8, offset=3.0)
    source, twin = ToySource(cfg, seed=5), ToySource(cfg, seed=5)
    scaler = ActivationScaler()
    scale = scaler.estimate(source, d_in=8, n_batches=4, batch_size=16)

    norms = torch.cat([twin.next_batch(16).double().norm(dim=-1) for _ in range(4)])
    assert scale == pytest.approx(math.sqrt(8) / float(norms.mean()), rel=1e-6)
    assert torch.equal(source.next_batch(16), twin.next_batch(16))  # the estimate's batches are gone


def test_saelens_estimate_reads_whole_batches_from_an_iterator() -> None:
    batches = [torch.randn(5, 6) + 2, torch.randn(9, 6) * 3, torch.randn(4, 6)]
    scaler = ActivationScaler()
    remaining = iter(batches)
    scaler.estimate_scaling_factor(6, remaining, n_batches_for_norm_estimate=2)

    norms = torch.cat([batch.double().norm(dim=-1) for batch in batches[:2]])
    assert scaler.scaling_factor == pytest.approx(math.sqrt(6) / float(norms.mean()), rel=1e-6)
    assert next(remaining) is batches[2]


def test_scale_unscale_and_state() -> None:
    scaler = ActivationScaler(2.0)
    x = torch.randn(3, 4)
    torch.testing.assert_close(scaler.scale(x), 2 * x)
    torch.testing.assert_close(scaler.unscale(scaler.scale(x)), x)
    restored = ActivationScaler()
    restored.load_state_dict(scaler.state_dict())
    assert restored.scaling_factor == 2.0
    assert ActivationScaler().scale(x) is x


def test_zero_activations_cannot_be_scaled() -> None:
    source = ToySource(ToySourceConfig(d_in=4), seed=0)
    source.on_batch = lambda _index, batch: torch.zeros_like(batch)
    with pytest.raises(ConfigError, match="n_batches_for_norm_estimate"):
        ActivationScaler().estimate(source, d_in=4, n_batches=2, batch_size=8)
