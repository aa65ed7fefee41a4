"""The synthetic superposition source: shapes, determinism, exact resume and its statistics.

Statistical expectations (firing rates, joint firing under the copula) are computed here
in float64 from the documented model, independently of the source's code.
"""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from saecore.errors import ConfigError
from saecore.registry import get_registry
from saecore.sources.synthetic import SyntheticSource, SyntheticSourceConfig

SMALL = {"d_in": 16, "n_features": 48, "avg_active_features": 4.0}


def small_source(seed: int = 0, **overrides: object) -> SyntheticSource:
    return SyntheticSource(SyntheticSourceConfig(**{**SMALL, **overrides}), seed=seed)


def expected_probabilities(n_features: int, avg_active: float, exponent: float) -> torch.Tensor:
    ranks = torch.arange(1, n_features + 1, dtype=torch.float64)
    weights = ranks ** (-exponent)
    return avg_active * weights / weights.sum()


def test_registered_as_synthetic() -> None:
    entry = get_registry().source("synthetic")
    assert entry.source_class is SyntheticSource
    assert entry.config_class is SyntheticSourceConfig


def test_shapes_dtypes_and_unit_features() -> None:
    source = small_source()
    batch = source.next_batch(32)
    assert batch.shape == (32, 16) and batch.dtype == torch.float32
    assert source.d_in == 16
    features = source.ground_truth_features()
    assert features.shape == (48, 16) and features.dtype == torch.float32
    torch.testing.assert_close(features.double().norm(dim=1), torch.ones(48, dtype=torch.float64))


def test_defaults_are_in_superposition() -> None:
    cfg = SyntheticSourceConfig()
    assert cfg.n_features > cfg.d_in


def test_same_seed_same_batches_other_seed_other_batches() -> None:
    first, second, other = small_source(seed=3), small_source(seed=3), small_source(seed=4)
    a = torch.cat([first.next_batch(20) for _ in range(3)])
    assert torch.equal(a, torch.cat([second.next_batch(20) for _ in range(3)]))
    assert not torch.equal(a[:20], other.next_batch(20))


def test_features_depend_on_feature_seed_not_on_batch_seed() -> None:
    assert torch.equal(small_source(seed=1).ground_truth_features(), small_source(seed=2).ground_truth_features())
    assert not torch.equal(
        small_source(feature_seed=0).ground_truth_features(), small_source(feature_seed=1).ground_truth_features()
    )


def test_resume_gives_identical_next_batches() -> None:
    source = small_source(seed=7, noise_std=0.1)
    for _ in range(3):
        source.next_batch(25)
    state = source.state_dict()
    expected = [source.next_batch(25), source.next_batch(10)]
    resumed = small_source(seed=7, noise_std=0.1)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.next_batch(25), expected[0])
    assert torch.equal(resumed.next_batch(10), expected[1])
    assert resumed.state_dict()["samples_served"] == 3 * 25 + 35


def test_resume_with_a_different_config_is_refused() -> None:
    state = small_source().state_dict()
    other = small_source(noise_std=0.5)
    with pytest.raises(ConfigError, match="SyntheticSourceConfig"):
        other.load_state_dict(state)


def test_batch_is_coefficients_times_features_plus_offset() -> None:
    source = small_source(bias_norm=2.0)
    batch, coefficients = source.next_batch_with_coefficients(64)
    features = source.ground_truth_features().double()
    offset = batch.double() - coefficients.double() @ features
    torch.testing.assert_close(offset, offset[:1].expand(64, -1), atol=1e-5, rtol=0)
    assert offset[0].norm().item() == pytest.approx(2.0, rel=1e-5)
    assert (coefficients >= 0).all()


def test_noise_has_the_configured_std() -> None:
    source = small_source(noise_std=0.3)
    batch, coefficients = source.next_batch_with_coefficients(4000)
    residual = batch.double() - coefficients.double() @ source.ground_truth_features().double()
    assert residual.std().item() == pytest.approx(0.3, rel=0.03)


@pytest.mark.parametrize("correlation", [0.0, 0.4])
def test_firing_rates_follow_the_zipf_like_probabilities(correlation: float) -> None:
    source = small_source(seed=11, correlation=correlation, firing_prob_exponent=0.8)
    expected = expected_probabilities(48, 4.0, 0.8)
    torch.testing.assert_close(source.probabilities.double(), expected, rtol=1e-6, atol=0)
    n = 40_000
    _, coefficients = source.next_batch_with_coefficients(n)
    rates = (coefficients > 0).double().mean(0)
    # Binomial standard error per feature; 5 sigma keeps the test deterministic-in-practice.
    tolerance = 5 * (expected * (1 - expected) / n).sqrt()
    assert ((rates - expected).abs() <= tolerance).all()
    assert (coefficients > 0).sum(1).double().mean().item() == pytest.approx(4.0, rel=0.03)


def test_magnitudes_are_folded_normal() -> None:
    source = small_source(magnitude_mean=2.0, magnitude_std=0.5)
    _, coefficients = source.next_batch_with_coefficients(20_000)
    fired = coefficients[coefficients > 0].double()
    assert fired.mean().item() == pytest.approx(2.0, abs=0.02)
    assert fired.std().item() == pytest.approx(0.5, rel=0.05)


def reference_joint_firing(p: float, rho: float, n: int = 2_000_000) -> float:
    """P(both fire) for two features of one group, by float64 Monte Carlo of the documented copula."""
    generator = torch.Generator().manual_seed(123)
    shared = torch.randn(n, dtype=torch.float64, generator=generator)
    own = torch.randn(n, 2, dtype=torch.float64, generator=generator)
    latent = math.sqrt(rho) * shared[:, None] + math.sqrt(1 - rho) * own
    threshold = math.sqrt(2) * torch.erfinv(torch.tensor(1 - 2 * p, dtype=torch.float64))
    return (latent > threshold).all(dim=1).double().mean().item()


def test_correlated_groups_fire_together_at_the_copula_rate() -> None:
    rho, group, p = 0.5, 4, 0.1
    source = small_source(
        seed=5, n_features=48, avg_active_features=48 * p, firing_prob_exponent=0.0,
        correlation=rho, correlation_group_size=group,
    )
    _, coefficients = source.next_batch_with_coefficients(30_000)
    fires = (coefficients > 0).double()
    joint = fires.T @ fires / fires.shape[0]
    same_group = torch.arange(48)[:, None] // group == torch.arange(48)[None, :] // group
    off_diagonal = ~torch.eye(48, dtype=torch.bool)
    within = joint[same_group & off_diagonal].mean().item()
    across = joint[~same_group].mean().item()
    assert within == pytest.approx(reference_joint_firing(p, rho), rel=0.05)
    assert across == pytest.approx(p * p, rel=0.05)
    assert within > 2 * across


def test_zero_correlation_fires_independently() -> None:
    source = small_source(seed=5, avg_active_features=4.8, firing_prob_exponent=0.0, correlation=0.0)
    _, coefficients = source.next_batch_with_coefficients(30_000)
    fires = (coefficients > 0).double()
    joint = fires.T @ fires / fires.shape[0]
    pairs = joint[~torch.eye(48, dtype=torch.bool)]
    assert pairs.mean().item() == pytest.approx(0.1 * 0.1, rel=0.05)


def test_impossible_firing_probability_names_the_field() -> None:
    with pytest.raises(ValidationError, match="avg_active_features"):
        SyntheticSourceConfig(n_features=10, avg_active_features=8.0, firing_prob_exponent=1.0)


@pytest.mark.parametrize(("field", "value"), [("correlation", 1.0), ("n_features", 0), ("noise_std", -1.0)])
def test_out_of_range_fields_are_rejected(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        SyntheticSourceConfig(**{field: value})


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="sparsity"):
        SyntheticSourceConfig(sparsity=0.1)


def test_metadata_says_where_the_activations_came_from() -> None:
    metadata = small_source().sae_metadata()
    assert metadata["model_name"] == "synthetic-superposition"
    assert metadata["hook_name"] == "synthetic"
    assert metadata["dataset_path"] == "synthetic"
    assert metadata["synthetic_source"]["n_features"] == 48
