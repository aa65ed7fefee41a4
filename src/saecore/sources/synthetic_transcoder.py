"""A toy transcoder problem whose true map from input to target is known.

Transcoders are trained to predict one activation (an MLP's output) from another (its
input). This source makes the map known: every true feature ``i`` has an input direction
``e_i`` (``d_in``) and an output direction ``f_i`` (``d_out``); a sample draws sparse
coefficients ``c`` exactly as :mod:`saecore.sources.synthetic` does and serves

* input ``x = Σ_i σ_i c_i e_i + ε_x``, as the synthetic SAE source would, and
* target ``y = Σ_i c_i f_i + ε_y``, with ``ε_y ~ N(0, target_noise_std²)``,

where ``σ_i = ±1`` is a fair random sign per sample and feature when ``signed_inputs`` (else
``σ_i = 1``). With signs the map is not linear, as an MLP's is not: every input
coordinate is uncorrelated with every target coordinate, so a skip connection cannot
stand in for the features and the decoder must find them; a feature then needs a latent
for each sign. Without signs the map is linear in ``x`` wherever the features can be told
apart, and a skip connection absorbs much of it.

side by side in one row ``[x | y]``. A transcoder that has learnt the map has a decoder
row per true output direction; ``ground_truth_features`` returns the ``f_i`` for
:func:`saecore.evals.ground_truth.ground_truth_recovery` to score against. The output
directions, like the input ones, depend only on ``feature_seed``.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from saecore.config.validation import PositiveCount
from saecore.sources.cached import derive_seed
from saecore.sources.synthetic import MAX_TOY_SIZE, SyntheticSource, SyntheticSourceConfig


class SyntheticTranscoderSourceConfig(SyntheticSourceConfig):
    """The toy model's input side (as the synthetic source), plus the target's width and noise.

    128 features by default, half the synthetic source's: with signed inputs each feature
    needs a latent per sign: the CLI's default width (8 · d_in = 512) has two per feature and sign.
    """

    n_features: PositiveCount = Field(default=128, le=MAX_TOY_SIZE, description="Number of true feature directions.")
    d_out: PositiveCount = Field(default=64, le=MAX_TOY_SIZE, description="Dimension of the target space.")
    target_noise_std: float = Field(default=0.0, ge=0, description="Std of Gaussian noise added to each target.")
    signed_inputs: bool = Field(
        default=True, description="Each firing feature enters the input with a random sign (the map is not linear)."
    )


class SyntheticTranscoderSource(SyntheticSource):
    """Serves ``[input | target]`` rows of the toy map; ``ground_truth_features()`` are the output directions."""

    cfg: SyntheticTranscoderSourceConfig

    def __init__(self, cfg: SyntheticTranscoderSourceConfig, *, seed: int = 42, device: str = "cpu") -> None:
        super().__init__(cfg, seed=seed, device=device)
        self._output_features = _output_directions(cfg).to(self.device)

    @property
    def d_in(self) -> int:
        return self.cfg.d_in + self.cfg.d_out

    @property
    def target_width(self) -> int:
        return self.cfg.d_out

    def next_batch(self, batch_size: int) -> torch.Tensor:
        inputs, coefficients = self.next_batch_with_coefficients(batch_size)
        targets = coefficients.abs() @ self._output_features
        if self.cfg.target_noise_std > 0:
            targets += self.cfg.target_noise_std * self._randn(batch_size, self.cfg.d_out)
        return torch.cat([inputs, targets], 1)

    def _sample_coefficients(self, n: int) -> torch.Tensor:
        """The synthetic source's coefficients, each with its sign ``σ_i`` (the target reads their magnitudes)."""
        coefficients = super()._sample_coefficients(n)
        if self.cfg.signed_inputs:
            flips = torch.rand(coefficients.shape, generator=self._generator, device=self.device) < 0.5
            coefficients[flips] *= -1
        return coefficients

    def ground_truth_features(self) -> torch.Tensor:
        return self._output_features.clone()

    def input_features(self) -> torch.Tensor:
        """The true input directions ``[n_features, d_in]`` (what a transcoder's encoder should read)."""
        return super().ground_truth_features()

    def sae_metadata(self) -> dict[str, Any]:
        return {
            "model_name": "synthetic-transcoder",
            "hook_name": "synthetic_in",
            "hook_name_out": "synthetic_out",
            "dataset_path": "synthetic",
            "synthetic_source": self.cfg.model_dump(mode="json"),
        }


def _output_directions(cfg: SyntheticTranscoderSourceConfig) -> torch.Tensor:
    """Unit output directions ``[n_features, d_out]``, drawn on the CPU in float64 from their own seed."""
    generator = torch.Generator().manual_seed(derive_seed(cfg.feature_seed, 1))
    features = torch.randn(cfg.n_features, cfg.d_out, generator=generator, dtype=torch.float64)
    return (features / features.norm(dim=1, keepdim=True)).float()
