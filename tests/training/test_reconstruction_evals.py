"""Reconstruction metrics against float64 formulas written out here."""

from __future__ import annotations

import pytest
import torch
from saecore_sae_standard.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig

from saecore.evals.reconstruction import ReconstructionAccumulator, evaluate_reconstruction


def _sae() -> StandardTrainingSAE:
    torch.manual_seed(0)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=6, d_sae=10, decoder_init_norm=None))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3)
        sae.b_dec.normal_(0, 0.1)
    return sae


def _reference(x: torch.Tensor, x_hat: torch.Tensor, acts: torch.Tensor) -> dict[str, float]:
    x, x_hat, acts = x.double(), x_hat.double(), acts.double()
    residual = ((x - x_hat) ** 2).sum(-1)
    total_variance = (x**2).sum(-1).mean() - (x.mean(0) ** 2).sum()
    return {
        "mse": float(residual.mean()),
        "explained_variance": float(1 - residual.mean() / total_variance),
        "cossim": float(((x * x_hat).sum(-1) / (x.norm(dim=-1) * x_hat.norm(dim=-1))).mean()),
        "l0": float((acts != 0).sum(-1).double().mean()),
        "l1": float(acts.abs().sum(-1).mean()),
        "l2_norm_in": float(x.norm(dim=-1).mean()),
        "l2_norm_out": float(x_hat.norm(dim=-1).mean()),
        "l2_ratio": float((x_hat.norm(dim=-1) / x.norm(dim=-1)).mean()),
        "relative_reconstruction_bias": float((x_hat**2).sum(-1).mean() / (x * x_hat).sum(-1).mean()),
    }


@pytest.mark.parametrize("scaling_factor", [None, 2.5])
def test_metrics_match_float64_formulas_over_several_batches(scaling_factor: float | None) -> None:
    sae = _sae()
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(n, 6, generator=generator) + 4.0 for n in (7, 13, 5)]

    metrics = evaluate_reconstruction(sae, batches, scaling_factor=scaling_factor)

    s = 1.0 if scaling_factor is None else scaling_factor
    with torch.no_grad():
        acts = [sae.encode(b * s) for b in batches]
        outs = [sae.decode(a) / s for a in acts]
    x, x_hat, f = torch.cat(batches), torch.cat(outs), torch.cat(acts)
    expected = _reference(x, x_hat, f)
    for name, value in expected.items():
        assert getattr(metrics, name) == pytest.approx(value, rel=1e-5, abs=1e-6), name
    legacy = torch.cat([
        1 - ((b.double() - o.double()) ** 2).sum(-1) / ((b.double() - b.double().mean(0)) ** 2).sum(-1)
        for b, o in zip(batches, outs)
    ]).mean()
    assert metrics.explained_variance_legacy == pytest.approx(float(legacy), rel=1e-5)
    density = (f != 0).double().mean(0)
    torch.testing.assert_close(metrics.feature_density.double(), density, rtol=1e-6, atol=1e-7)
    assert metrics.n_tokens == 25
    assert metrics.dead_features == int((density == 0).sum())
    assert metrics.dense_features == int((density > 0.1).sum())
    assert sae.training, "evaluation restores the SAE's mode"


def test_perfect_reconstruction_and_log_keys() -> None:
    accumulator = ReconstructionAccumulator(d_sae=3)
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    acts = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0]])
    accumulator.add_batch(x, x.clone(), acts)
    metrics = accumulator.compute()
    assert metrics.explained_variance == 1.0
    assert metrics.mse == 0.0
    assert metrics.cossim == pytest.approx(1.0)
    assert metrics.dead_features == 1
    assert metrics.dense_features == 2
    log = metrics.as_log_dict()
    assert log["reconstruction_quality/explained_variance"] == 1.0
    assert log["sparsity/l0"] == pytest.approx(4 / 3)
    assert {"shrinkage/l2_ratio", "sparsity/eval_dead_features", "sparsity/eval_dense_features"} <= set(log)


def test_no_batches_is_an_error() -> None:
    with pytest.raises(ValueError, match="n_eval_batches"):
        ReconstructionAccumulator(d_sae=2).compute()
