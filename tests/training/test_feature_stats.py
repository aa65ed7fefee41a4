"""Dead-latent counting and firing frequencies against a plain Python re-count."""

from __future__ import annotations

import torch

from saecore.training.feature_stats import FeatureStats


def test_dead_mask_and_window_frequencies_match_a_python_recount() -> None:
    generator = torch.Generator().manual_seed(0)
    d_sae, window, batch = 6, 3, 5
    stats = FeatureStats(d_sae, dead_feature_window=window, device="cpu")
    steps_since = [0] * d_sae
    fired_total = [0] * d_sae
    for step in range(12):
        counts = (torch.rand(batch, d_sae, generator=generator) < 0.08).sum(0)
        counts[0] = 0  # latent 0 never fires
        stats.update(counts, batch)
        for i in range(d_sae):
            steps_since[i] = 0 if counts[i] > 0 else steps_since[i] + 1
            fired_total[i] += int(counts[i])
        expected_dead = [s > window for s in steps_since]
        assert stats.dead_mask().tolist() == expected_dead, f"step {step}"
    assert stats.dead_mask()[0]
    expected_freq = torch.tensor(fired_total, dtype=torch.float64) / (12 * batch)
    torch.testing.assert_close(stats.feature_sparsity.double(), expected_freq)
    torch.testing.assert_close(stats.log_feature_sparsity.double(), torch.log10(expected_freq + 1e-10), rtol=1e-6,
                               atol=1e-6)


def test_reset_window_clears_frequencies_but_not_dead_counts() -> None:
    stats = FeatureStats(3, dead_feature_window=1, device="cpu")
    for _ in range(3):
        stats.update(torch.tensor([2, 0, 0]), 4)
    stats.reset_window()
    assert stats.n_frac_active_samples == 0
    assert stats.act_freq_scores.tolist() == [0.0, 0.0, 0.0]
    assert stats.dead_mask().tolist() == [False, True, True]
    assert stats.log_feature_sparsity.tolist() == [-10.0, -10.0, -10.0]


def test_window_log_counts_rare_latents() -> None:
    stats = FeatureStats(4, dead_feature_window=10, device="cpu")
    stats.update(torch.tensor([100_000, 5, 0, 0]), 1_000_000)
    scalars, histogram = stats.window_log()
    assert scalars["sparsity/below_1e-5"] == 3.0  # 5e-6, 0, 0
    assert scalars["sparsity/below_1e-6"] == 2.0
    expected = torch.log10(torch.tensor([0.1, 5e-6, 0.0, 0.0], dtype=torch.float64) + 1e-10)
    assert abs(scalars["metrics/mean_log10_feature_sparsity"] - float(expected.mean())) < 1e-5
    torch.testing.assert_close(histogram.double(), expected, rtol=1e-5, atol=1e-5)


def test_state_round_trip() -> None:
    stats = FeatureStats(3, dead_feature_window=2, device="cpu")
    stats.update(torch.tensor([1, 0, 4]), 8)
    restored = FeatureStats(3, dead_feature_window=2, device="cpu")
    restored.load_state_dict(stats.state_dict())
    assert torch.equal(restored.n_forward_passes_since_fired, stats.n_forward_passes_since_fired)
    assert torch.equal(restored.act_freq_scores, stats.act_freq_scores)
    assert restored.n_frac_active_samples == 8
