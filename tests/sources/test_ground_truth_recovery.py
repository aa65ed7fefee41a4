"""ground_truth_recovery against a brute-force float64 reference and a constructed decoder."""

from __future__ import annotations

import math

import pytest
import torch

from saecore.errors import ConfigError
from saecore.evals.ground_truth import GroundTruthRecovery, ground_truth_recovery


def brute_force(W_dec: torch.Tensor, features: torch.Tensor, threshold: float) -> tuple[float, float]:
    """Every pair's cosine, one at a time, in float64."""
    best = []
    for feature in features.double():
        cosines = [
            float(feature @ row) / (float(feature.norm()) * float(row.norm())) if float(row.norm()) > 0 else 0.0
            for row in W_dec.double()
        ]
        best.append(max(cosines))
    return sum(b >= threshold for b in best) / len(best), sum(best) / len(best)


def rotate_towards(feature: torch.Tensor, cosine: float, generator: torch.Generator) -> torch.Tensor:
    """A vector with exactly ``cosine`` to the unit ``feature`` (random orthogonal part), norm 3."""
    noise = torch.randn(feature.shape[0], dtype=torch.float64, generator=generator)
    orthogonal = noise - (noise @ feature) * feature
    orthogonal /= orthogonal.norm()
    return 3.0 * (cosine * feature + math.sqrt(1 - cosine**2) * orthogonal)


def test_constructed_decoder_with_known_cosines() -> None:
    generator = torch.Generator().manual_seed(0)
    d_in, n_features = 32, 12
    # Orthonormal features, so every decoder row is close only to the feature it was built from.
    features = torch.linalg.qr(torch.randn(d_in, n_features, dtype=torch.float64, generator=generator))[0].T
    cosines = torch.tensor([0.99, 0.95, 0.91, 0.905, 0.899, 0.8, 0.97, 0.5, 0.93, 0.3, 0.92, 0.6], dtype=torch.float64)
    rows = torch.stack([rotate_towards(f, float(c), generator) for f, c in zip(features, cosines)])
    extra = torch.zeros(4, d_in, dtype=torch.float64)  # dead latents: zero rows must not count
    W_dec = torch.cat([rows, extra])[torch.randperm(n_features + 4, generator=generator)].float()
    result = ground_truth_recovery(W_dec, features.float(), threshold=0.9)
    assert result.fraction_recovered == pytest.approx(7 / 12)
    assert result.mean_max_cosine == pytest.approx(float(cosines.mean()), abs=1e-6)
    assert result.threshold == 0.9


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.9])
def test_matches_brute_force_on_random_overcomplete_case(threshold: float) -> None:
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(20, 8, generator=generator)
    near = features[:10] + 0.2 * torch.randn(10, 8, generator=generator)
    W_dec = torch.cat([near, torch.randn(15, 8, generator=generator)])
    result = ground_truth_recovery(W_dec, features, threshold=threshold)
    fraction, mean = brute_force(W_dec, features, threshold)
    assert result.fraction_recovered == pytest.approx(fraction)
    assert result.mean_max_cosine == pytest.approx(mean, abs=1e-12)


def test_sign_matters_and_scale_does_not() -> None:
    features = torch.eye(4)
    assert ground_truth_recovery(-5 * features, features).fraction_recovered == 0.0
    assert ground_truth_recovery(0.01 * features, features).fraction_recovered == 1.0


def test_large_comparisons_are_blocked_without_changing_the_answer() -> None:
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(300, 16, generator=generator)
    W_dec = torch.randn(20_000, 16, generator=generator)
    expected = (torch.nn.functional.normalize(features.double(), dim=1)
                @ torch.nn.functional.normalize(W_dec.double(), dim=1).T).max(dim=1).values
    result = ground_truth_recovery(W_dec, features, threshold=0.95)
    assert result.mean_max_cosine == pytest.approx(float(expected.mean()), abs=1e-12)
    assert result.fraction_recovered == pytest.approx(float((expected >= 0.95).double().mean()))


def test_as_dict_and_frozen() -> None:
    result = ground_truth_recovery(torch.eye(3), torch.eye(3))
    assert result.as_dict() == {"fraction_recovered": 1.0, "mean_max_cosine": 1.0, "threshold": 0.9}
    assert isinstance(result, GroundTruthRecovery)
    with pytest.raises(AttributeError):
        result.threshold = 0.5  # type: ignore[misc]


def test_mismatched_widths_name_both_tensors() -> None:
    with pytest.raises(ConfigError, match=r"W_dec.*d_in=4.*true_features.*d_in=5"):
        ground_truth_recovery(torch.zeros(3, 4), torch.zeros(2, 5))


def test_threshold_outside_cosine_range_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"threshold=1\.5"):
        ground_truth_recovery(torch.eye(2), torch.eye(2), threshold=1.5)
