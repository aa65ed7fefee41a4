"""BatchTopK's support route: the candidate search against batch_topk, and the step against the dense one."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pytest
import torch
from saecore_sae_batchtopk.batch_topk import batch_topk, batch_topk_entries, batch_topk_entries_not_below
from saecore_sae_batchtopk.batchtopk_sae import BatchTopKTrainingSAE
from saecore_sae_batchtopk.config import BatchTopKTrainingSAEConfig
from saecore_sae_batchtopk.support_step import SearchStart
from saecore_sae_topk.entries_not_below import entries_not_below
from saecore_sae_topk.row_topk import row_topk

from saecore import TrainStepInput
from saecore.testing import FastRouteConformance


def dense_from_entries(scores: torch.Tensor, rows: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    kept = torch.zeros_like(scores)
    kept[rows, latents] = scores[rows, latents]
    return kept


def skewed_scores() -> torch.Tensor:
    """Rows of very different heights: the first rows hold most of the batch's largest entries."""
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(32, 256, generator=generator)
    return scores + torch.linspace(3.0, -3.0, 32).unsqueeze(1)


@pytest.mark.parametrize("width", [1, 8, 256])
def test_candidate_search_keeps_what_batch_topk_keeps_and_widens_when_a_row_needs_it(width: int) -> None:
    scores = skewed_scores()
    kept = batch_topk_entries(scores, 4, row_topk, width)
    assert torch.equal(kept.rows, kept.rows.sort().values)
    expected = batch_topk(scores, 4)
    torch.testing.assert_close(dense_from_entries(scores, kept.rows, kept.latents), expected, rtol=0, atol=0)
    torch.testing.assert_close(kept.scores, scores[kept.rows, kept.latents], rtol=0, atol=0)
    assert kept.busiest_row == int((expected > 0).sum(1).max()) > 8  # so a start at 1 or 8 candidates had to widen


def test_candidate_search_keeps_only_the_positive_entries_when_fewer_than_the_budget_are() -> None:
    scores = torch.full((6, 64), -1.0)
    scores[0, 3], scores[2, 10], scores[2, 11] = 0.5, 2.0, 1.0
    kept = batch_topk_entries(scores, 2, row_topk, 1)
    assert sorted(zip(kept.rows.tolist(), kept.latents.tolist())) == [(0, 3), (2, 10), (2, 11)]
    assert kept.busiest_row == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # the compiled listing, and torch's
def test_bounded_search_keeps_what_batch_topk_keeps_when_the_cut_off_is_above_the_bound(dtype: torch.dtype) -> None:
    scores = skewed_scores().to(dtype)
    expected = batch_topk(scores, 4)
    cutoff = float(expected[expected > 0].min())
    kept = batch_topk_entries_not_below(scores, 4, entries_not_below, 0.9 * cutoff)
    assert kept is not None
    assert torch.equal(kept.rows, kept.rows.sort().values)
    torch.testing.assert_close(dense_from_entries(scores, kept.rows, kept.latents), expected, rtol=0, atol=0)
    torch.testing.assert_close(kept.scores, scores[kept.rows, kept.latents], rtol=0, atol=0)
    assert kept.positions is not None and torch.equal(kept.positions, kept.rows * 256 + kept.latents)
    assert kept.busiest_row == int((expected > 0).sum(1).max())
    assert kept.cutoff == cutoff


def test_bounded_search_gives_up_when_the_cut_off_lies_below_the_bound_and_refuses_a_non_positive_bound() -> None:
    scores = skewed_scores()
    assert batch_topk_entries_not_below(scores, 4, entries_not_below, float(scores.max()) + 1) is None
    with pytest.raises(ValueError, match=r"bound must be positive, got 0\.0"):
        batch_topk_entries_not_below(scores, 4, entries_not_below, 0.0)


@pytest.mark.parametrize("bound", [None, 1e-6, 1e9])  # no bound; a low one; one above every score (falls back)
def test_every_search_start_gives_the_dense_selection(bound: float | None) -> None:
    cfg = BatchTopKTrainingSAEConfig(d_in=16, d_sae=128, k=4)
    sae: BatchTopKTrainingSAE[Any] = BatchTopKTrainingSAE(cfg)
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(2))
    sae.search_start = SearchStart(1, bound)
    output = sae.training_forward_pass(TrainStepInput(x, {}, None, n_training_steps=0))
    torch.testing.assert_close(output.feature_acts.to_dense(), batch_topk(sae.ranking_scores(x).detach(), 4))
    assert sae.search_start.bound is not None


def test_the_step_on_the_support_tracks_the_threshold_and_reports_sparse_activations() -> None:
    cfg = BatchTopKTrainingSAEConfig(d_in=16, d_sae=128, k=4, topk_threshold_lr=0.5, dtype="float64")
    sae: BatchTopKTrainingSAE[Any] = BatchTopKTrainingSAE(cfg)
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    output = sae.training_forward_pass(TrainStepInput(x, {}, None, n_training_steps=0))
    assert output.feature_acts.is_sparse
    acts = output.feature_acts.to_dense()
    expected = batch_topk(sae.ranking_scores(x).detach(), 4)
    torch.testing.assert_close(acts, expected)
    assert float(sae.topk_threshold) == pytest.approx(0.5 * float(expected[expected > 0].min()), rel=1e-12)
    # The next batch starts from a quarter more candidates than the busiest row kept.
    assert sae.search_start.width == math.ceil(1.25 * int((expected > 0).sum(1).max()))
    # ... and bounds its cut-off by 0.95 times this one's.
    assert sae.search_start.bound == pytest.approx(0.95 * float(expected[expected > 0].min()), rel=1e-12)
    logged = sae.training_forward_pass(TrainStepInput(x, {}, None, n_training_steps=1, is_logging_step=True))
    assert not logged.feature_acts.is_sparse
    torch.testing.assert_close(logged.feature_acts, expected)


class TestBatchTopKFastRoute(FastRouteConformance):
    training_recipe = "batchtopk"
    config_overrides: ClassVar[dict[str, Any]] = {"k": 4, "aux_loss_coefficient": 0.7}


class TestBatchTopKUnscaledFastRoute(FastRouteConformance):
    training_recipe = "batchtopk"
    config_overrides: ClassVar[dict[str, Any]] = {"k": 4, "rescale_acts_by_decoder_norm": False,
                                                  "apply_b_dec_to_input": True}
