"""Reconstruction and sparsity metrics of an SAE on activation batches.

Nothing here knows where the batches come from: the trainer feeds it fresh batches from
its source during training, and anyone can feed it a held-out tensor afterwards. The
definitions follow SAELens's ``run_evals`` so numbers are comparable across the two:

* ``explained_variance = 1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²)`` over *all* evaluated
  tokens (the variance is the total variance summed over dimensions);
  ``explained_variance_legacy`` is SAELens's older per-token ratio against the batch
  mean, kept because dashboards plot it.
* ``mse = E‖x − x̂‖²`` (summed over dimensions, averaged over tokens: the training MSE).
* ``l0`` counts latents ``≠ 0`` (signed architectures count too), ``l1 = E Σ|f|``.
* ``relative_reconstruction_bias = E‖x̂‖² / E⟨x, x̂⟩`` (Wright & Sharkey, eq. 10); 1 is
  unbiased, below 1 means shrinkage.

Sums cross batches in float64: the variance is a difference of two large, nearly equal
numbers when activations have a large mean, and float32 loses it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

DENSE_FEATURE_THRESHOLD = 0.1
"""A latent firing on more than 10% of tokens counts as dense: it behaves like a bias
rather than a feature (the cut-off Anthropic's monosemanticity updates use)."""

_NORM_FLOOR = 1e-4
"""Inputs with a smaller norm get ratio denominators of 1, as in SAELens (no division by ~0)."""


@dataclass(frozen=True)
class ReconstructionMetrics:
    """Averages over ``n_tokens`` evaluated tokens; ``feature_density`` is per latent."""

    n_tokens: int
    l0: float
    l1: float
    mse: float
    explained_variance: float
    explained_variance_legacy: float
    cossim: float
    l2_norm_in: float
    l2_norm_out: float
    l2_ratio: float
    relative_reconstruction_bias: float
    feature_density: torch.Tensor
    dense_threshold: float = DENSE_FEATURE_THRESHOLD

    @property
    def dead_features(self) -> int:
        """Latents that never fired on any evaluated token."""
        return int((self.feature_density == 0).sum())

    @property
    def dense_features(self) -> int:
        """Latents firing on more than ``dense_threshold`` of the evaluated tokens."""
        return int((self.feature_density > self.dense_threshold).sum())

    def log10_feature_density(self) -> torch.Tensor:
        """``log10(density + 1e-10)``: the histogram SAELens users read feature health from."""
        return torch.log10(self.feature_density + 1e-10)

    def as_log_dict(self) -> dict[str, float]:
        """Scalars under SAELens's eval group names (``reconstruction_quality/…`` …)."""
        return {
            "reconstruction_quality/explained_variance": self.explained_variance,
            "reconstruction_quality/explained_variance_legacy": self.explained_variance_legacy,
            "reconstruction_quality/mse": self.mse,
            "reconstruction_quality/cossim": self.cossim,
            "shrinkage/l2_norm_in": self.l2_norm_in,
            "shrinkage/l2_norm_out": self.l2_norm_out,
            "shrinkage/l2_ratio": self.l2_ratio,
            "shrinkage/relative_reconstruction_bias": self.relative_reconstruction_bias,
            "sparsity/l0": self.l0,
            "sparsity/l1": self.l1,
            "sparsity/eval_dead_features": float(self.dead_features),
            "sparsity/eval_dense_features": float(self.dense_features),
        }


class ReconstructionAccumulator:
    """Running sums over batches, kept on the batches' device until ``compute``.

    Adding a batch launches kernels only; ``compute`` is the single host sync.
    """

    _SCALARS = (
        "l0", "l1", "sq_residual", "sq_norm_in", "legacy_ev", "cossim", "l2_in", "l2_out", "l2_ratio",
        "sq_norm_out", "dot",
    )

    def __init__(self, d_sae: int, dense_threshold: float = DENSE_FEATURE_THRESHOLD) -> None:
        self.d_sae = d_sae
        self.dense_threshold = dense_threshold
        self.n_tokens = 0
        self._sums: torch.Tensor | None = None
        self._sum_x: torch.Tensor | None = None
        self._firing: torch.Tensor | None = None

    @torch.no_grad()
    def add_batch(self, sae_in: torch.Tensor, sae_out: torch.Tensor, feature_acts: torch.Tensor) -> None:
        """Add ``[n, d_in]`` inputs and reconstructions and their ``[n, d_sae]`` activations."""
        if feature_acts.is_sparse:
            feature_acts = feature_acts.to_dense()
        x = sae_in.reshape(-1, sae_in.shape[-1]).to(torch.promote_types(sae_in.dtype, torch.float32))
        x_hat = sae_out.reshape(-1, sae_out.shape[-1]).to(x.dtype)
        acts = feature_acts.reshape(-1, feature_acts.shape[-1])
        active = acts != 0

        residual_sq = (x - x_hat).pow(2).sum(-1)
        centred_sq = (x - x.mean(0)).pow(2).sum(-1)
        norm_in = x.norm(dim=-1)
        norm_out = x_hat.norm(dim=-1)
        safe_norm_in = torch.where(norm_in.abs() < _NORM_FLOOR, torch.ones_like(norm_in), norm_in)
        cossim = (x * x_hat).sum(-1) / (norm_in * norm_out).clamp_min(1e-12)
        per_token = torch.stack([
            active.sum(-1).to(x.dtype),
            acts.abs().sum(-1).to(x.dtype),
            residual_sq,
            x.pow(2).sum(-1),
            1 - residual_sq / centred_sq,
            cossim,
            norm_in,
            norm_out,
            norm_out / safe_norm_in,
            x_hat.pow(2).sum(-1),
            (x * x_hat).sum(-1),
        ])
        sums = per_token.to(torch.float64).sum(-1)
        sum_x = x.to(torch.float64).sum(0)
        firing = active.sum(0).to(torch.float64)
        if self._sums is None:
            self._sums, self._sum_x, self._firing = sums, sum_x, firing
        else:
            self._sums += sums
            self._sum_x += sum_x
            self._firing += firing
        self.n_tokens += x.shape[0]

    def compute(self) -> ReconstructionMetrics:
        if self._sums is None or self._sum_x is None or self._firing is None:
            raise ValueError("no batches were evaluated (n_eval_batches must be at least 1)")
        n = self.n_tokens
        means = dict(zip(self._SCALARS, (self._sums / n).tolist()))
        mean_x_sq = float(self._sum_x.div(n).pow(2).sum())
        total_variance = means["sq_norm_in"] - mean_x_sq
        mse = means["sq_residual"]
        if total_variance < 1e-10:
            explained_variance = 1.0 if mse < 1e-10 else 0.0
        else:
            explained_variance = 1.0 - mse / total_variance
        return ReconstructionMetrics(
            n_tokens=n,
            l0=means["l0"],
            l1=means["l1"],
            mse=mse,
            explained_variance=explained_variance,
            explained_variance_legacy=means["legacy_ev"],
            cossim=means["cossim"],
            l2_norm_in=means["l2_in"],
            l2_norm_out=means["l2_out"],
            l2_ratio=means["l2_ratio"],
            relative_reconstruction_bias=means["sq_norm_out"] / means["dot"] if means["dot"] != 0 else float("nan"),
            feature_density=(self._firing / n).float().cpu(),
            dense_threshold=self.dense_threshold,
        )


@torch.no_grad()
def evaluate_reconstruction(
    sae: Any,
    batches: Iterable[torch.Tensor],
    *,
    scaling_factor: float | None = None,
    dense_threshold: float = DENSE_FEATURE_THRESHOLD,
    target_scaling_factor: float | None = None,
) -> ReconstructionMetrics:
    """Run ``sae`` (inference or training) on each batch and measure the reconstruction.

    ``scaling_factor`` is the trainer's input scale while it is not yet folded into the
    weights: the SAE sees ``s·x`` and its output is divided by ``s``, so every metric is
    in the units of the raw activations.

    A coder that predicts a target (a transcoder, ``cfg.PREDICTS_TARGET``) takes batches of
    ``[input | target]`` rows; its output is compared with the target, divided by
    ``target_scaling_factor`` while that scale is not folded in.
    """
    was_training = sae.training
    sae.eval()
    accumulator = ReconstructionAccumulator(sae.cfg.d_sae, dense_threshold)
    output_scale = target_scaling_factor if sae.cfg.PREDICTS_TARGET else scaling_factor
    try:
        for batch in batches:
            rows = batch.to(sae.device)
            x = rows[:, :sae.cfg.d_in] if sae.cfg.PREDICTS_TARGET else rows
            sae_in = x * scaling_factor if scaling_factor is not None else x
            if sae.cfg.PREDICTS_TARGET:
                expected = rows[:, sae.cfg.d_in:]
                sae_out, feature_acts = sae.forward_with_activations(sae_in)
            else:
                expected = x
                feature_acts = sae.encode(sae_in)
                sae_out = sae.decode(feature_acts)
            if output_scale is not None:
                sae_out = sae_out / output_scale
            accumulator.add_batch(expected, sae_out, feature_acts)
    finally:
        sae.train(was_training)
    return accumulator.compute()
