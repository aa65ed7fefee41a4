"""A toy model of superposition whose true features are known.

Real activations never tell us which directions an SAE *should* find; this source does.
It draws sparse, non-negative feature coefficients and mixes ``n_features`` random unit
directions into a space of only ``d_in`` dimensions (``n_features > d_in``: the features
are in superposition), so a trained decoder can be scored against the truth with
:func:`saecore.evals.ground_truth.ground_truth_recovery`.

The generative model, per sample ``x``:

* **Firing.** Feature ``i`` fires with probability ``p_i ∝ (i + 1) ** -firing_prob_exponent``,
  scaled so that ``Σ p_i = avg_active_features`` (exponent 0: every feature equally
  likely; larger exponents give the long tail of rare features real models have).
* **Correlation.** Consecutive features form groups of ``correlation_group_size``. The
  firing decision is a Gaussian copula: ``z_i = √ρ·g_group(i) + √(1−ρ)·e_i`` with
  independent standard normals ``g`` (one per group) and ``e`` (one per feature), and
  feature ``i`` fires when ``z_i > Φ⁻¹(1 − p_i)``. Each marginal firing rate stays
  exactly ``p_i``; features of one group tend to fire together, more so as
  ``ρ = correlation`` grows. ``correlation = 0`` makes every feature independent.
* **Magnitude.** A firing feature's coefficient is ``|N(magnitude_mean, magnitude_std²)|``.
* **Mixing.** ``x = Σ_i c_i f_i + b + ε`` with unit feature directions ``f_i``, an offset
  ``b`` of norm ``bias_norm`` (a random direction) and isotropic noise ``ε ~ N(0, noise_std²)``.

The directions, offset and firing rates depend only on ``feature_seed``, so runs with
different training seeds face the same "model"; the batches depend only on the source's
``seed`` and are reproducible and resumable exactly.

The defaults (64 dimensions, 256 features, ~6 active per sample, mild correlation) are sized
for a quick start: a TopK SAE with ``d_sae = 2 · n_features`` (512, the CLI's default of
``8 · d_in``), ``k=8``, ``lr=1e-2`` and 1M training tokens recovers all of the features at
cosine ≥ 0.9 in about 10 seconds on two CPU cores (see benchmarks/quality_synthetic.py for
every architecture's settings and scores).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field, model_validator

from saecore.config.validation import PositiveCount
from saecore.errors import ConfigError
from saecore.sources.base import ActivationSource, SourceConfig

# The toy model's feature directions are a dense [n_features, d_in] tensor built on the spot.
MAX_TOY_SIZE = 2**20


class SyntheticSourceConfig(SourceConfig):
    """The toy model's shape and statistics (see the module docstring for the model)."""

    d_in: PositiveCount = Field(default=64, le=MAX_TOY_SIZE, description="Dimension of the activation space.")
    n_features: PositiveCount = Field(default=256, le=MAX_TOY_SIZE, description="Number of true feature directions.")
    avg_active_features: float = Field(
        default=6.0, gt=0, description="Expected number of features firing per sample (Σ p_i)."
    )
    firing_prob_exponent: float = Field(
        default=0.5, ge=0, description="p_i ∝ (i+1)^-exponent: 0 = uniform, larger = longer tail of rare features."
    )
    correlation: float = Field(
        default=0.3, ge=0, lt=1, description="Gaussian-copula correlation ρ of firing within a group (0 = independent)."
    )
    correlation_group_size: int = Field(default=4, ge=1, description="Consecutive features per correlated group.")
    magnitude_mean: float = Field(default=1.0, gt=0, description="Mean of a firing feature's coefficient.")
    magnitude_std: float = Field(default=0.2, ge=0, description="Std of a firing feature's coefficient.")
    noise_std: float = Field(default=0.0, ge=0, description="Std of isotropic Gaussian noise added to each coordinate.")
    bias_norm: float = Field(default=0.0, ge=0, description="Norm of a constant offset added to every sample.")
    feature_seed: int = Field(default=0, description="Seeds the directions and offset (not the batches).")

    @classmethod
    def defaults_from_sae_metadata(cls, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The config an SAE was trained on, recorded in its metadata: ``saecore eval`` sees the same features."""
        recorded = metadata.get("synthetic_source")
        if not isinstance(recorded, Mapping):
            return {}
        return {name: recorded[name] for name in cls.model_fields if name in recorded}

    @model_validator(mode="after")
    def _probabilities_are_valid(self) -> SyntheticSourceConfig:
        highest = float(firing_probabilities(self)[0])
        if highest > 1.0:
            raise ValueError(
                f"avg_active_features={self.avg_active_features} with n_features={self.n_features} and "
                f"firing_prob_exponent={self.firing_prob_exponent} gives the most frequent feature a firing "
                f"probability of {highest:.3g} > 1; lower avg_active_features or firing_prob_exponent"
            )
        return self


def firing_probabilities(cfg: SyntheticSourceConfig) -> torch.Tensor:
    """``p_i`` in float64, most frequent feature first, summing to ``avg_active_features``."""
    ranks = torch.arange(1, cfg.n_features + 1, dtype=torch.float64)
    weights = ranks.pow(-cfg.firing_prob_exponent)
    return weights * (cfg.avg_active_features / weights.sum())


class SyntheticSource(ActivationSource):
    """Serves batches from the toy model; ``ground_truth_features()`` returns its directions."""

    cfg: SyntheticSourceConfig

    def __init__(self, cfg: SyntheticSourceConfig, *, seed: int = 42, device: str = "cpu") -> None:
        super().__init__(cfg, seed=seed, device=device)
        features, bias = _directions(cfg)
        self._features = features.to(self.device)
        self._bias = bias.to(self.device) if cfg.bias_norm > 0 else None
        probabilities = firing_probabilities(cfg)
        self._probabilities = probabilities.to(self.device, torch.float32)
        # Φ⁻¹(1 − p) = √2 · erfinv(1 − 2p), computed in float64 so rare features keep their rate.
        self._thresholds = (math.sqrt(2) * torch.erfinv(1 - 2 * probabilities)).to(self.device, torch.float32)
        groups = torch.arange(cfg.n_features, device=self.device) // cfg.correlation_group_size
        self._group_of_feature = groups
        self._n_groups = int(groups[-1]) + 1
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(seed)
        self._batches_served = 0
        self._samples_served = 0

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    def next_batch(self, batch_size: int) -> torch.Tensor:
        return self.next_batch_with_coefficients(batch_size)[0]

    def next_batch_with_coefficients(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch ``[batch_size, d_in]`` and the feature coefficients ``[batch_size, n_features]`` behind it.

        The coefficients are the ground truth per sample: which features fired and how strongly.
        """
        coefficients = self._sample_coefficients(batch_size)
        batch = coefficients @ self._features
        if self._bias is not None:
            batch += self._bias
        if self.cfg.noise_std > 0:
            batch += self.cfg.noise_std * self._randn(batch_size, self.cfg.d_in)
        self._batches_served += 1
        self._samples_served += batch_size
        return batch, coefficients

    def _sample_coefficients(self, n: int) -> torch.Tensor:
        cfg = self.cfg
        if cfg.correlation > 0:
            shared = self._randn(n, self._n_groups)[:, self._group_of_feature]
            latent = self._randn(n, cfg.n_features).mul_(math.sqrt(1 - cfg.correlation))
            latent.add_(shared, alpha=math.sqrt(cfg.correlation))
            fires = latent > self._thresholds
        else:
            uniform = torch.rand(n, cfg.n_features, generator=self._generator, device=self.device)
            fires = uniform < self._probabilities
        # Magnitudes are drawn only where a feature fired: a few per sample, not n_features.
        fired = fires.view(-1).nonzero().squeeze(1)
        magnitudes = self._randn(fired.numel()).mul_(cfg.magnitude_std).add_(cfg.magnitude_mean).abs_()
        coefficients = torch.zeros(n * cfg.n_features, device=self.device)
        coefficients[fired] = magnitudes
        return coefficients.view(n, cfg.n_features)

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self._generator, device=self.device)

    def ground_truth_features(self) -> torch.Tensor:
        return self._features.clone()

    @property
    def probabilities(self) -> torch.Tensor:
        """Each feature's marginal firing probability ``[n_features]``."""
        return self._probabilities.clone()

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator_state": self._generator.get_state(),
            "batches_served": self._batches_served,
            "samples_served": self._samples_served,
            "config": self.cfg.model_dump_json(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_config = state.get("config")
        if saved_config is not None and saved_config != self.cfg.model_dump_json():
            raise ConfigError(
                "synthetic source: the saved position belongs to a different SyntheticSourceConfig "
                f"({saved_config}); resume with the same source config ({self.cfg.model_dump_json()})"
            )
        self._generator.set_state(state["generator_state"])
        self._batches_served = int(state["batches_served"])
        self._samples_served = int(state["samples_served"])

    def sae_metadata(self) -> dict[str, Any]:
        return {
            "model_name": "synthetic-superposition",
            "hook_name": "synthetic",
            "dataset_path": "synthetic",
            "synthetic_source": self.cfg.model_dump(mode="json"),
        }


def _directions(cfg: SyntheticSourceConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit feature directions ``[n_features, d_in]`` and the offset ``[d_in]``, on the CPU.

    Drawn on the CPU in float64 so the same ``feature_seed`` gives the same features on any device.
    """
    generator = torch.Generator().manual_seed(cfg.feature_seed)
    features = torch.randn(cfg.n_features, cfg.d_in, generator=generator, dtype=torch.float64)
    features /= features.norm(dim=1, keepdim=True)
    offset = torch.randn(cfg.d_in, generator=generator, dtype=torch.float64)
    offset *= cfg.bias_norm / offset.norm()
    return features.float(), offset.float()
