"""The metrics logged on a training step, gathered with a single host sync.

Keys follow SAELens's trainer so existing dashboards keep working: ``losses/…``,
``metrics/explained_variance`` (``1 − mean‖x−x̂‖² / mean‖x−x̄‖²`` over the batch, x̄ the
batch mean, x the target: the input for an SAE), ``metrics/explained_variance_legacy`` (the
mean of the per-token ratio),
``metrics/l0``, ``sparsity/…``, ``details/…``. ``details/n_training_samples`` repeats
``details/n_training_tokens`` under SAELens's name.

In a data-parallel run each rank computes these on its own rows and ``reduce`` averages
them over ranks: exact for the losses and L0 (means over rows of equal-sized shards); the
explained variances become the mean of the ranks' per-shard values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from saecore.training_sae import TrainStepOutput


def _as_scalar_tensor(value: Any, device: torch.device) -> torch.Tensor:
    if callable(value):
        value = value()
    if isinstance(value, torch.Tensor):
        return value.detach().float().reshape(()).to(device)
    return torch.tensor(float(value), device=device)


@torch.no_grad()
def train_step_log(
    output: TrainStepOutput,
    *,
    passes_since_fired: torch.Tensor,
    dead_mask: torch.Tensor,
    learning_rate: float,
    n_training_tokens: int,
    coefficients: Mapping[str, float],
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """The log dict of one step; every tensor is reduced on the device and read back once.

    ``reduce`` (a data-parallel run's mean over ranks) is applied to all the values at once.
    """
    sae_in = output.target.to(torch.promote_types(output.target.dtype, torch.float32))
    sae_out = output.sae_out.to(sae_in.dtype)
    feature_acts = output.feature_acts.to_dense() if output.feature_acts.is_sparse else output.feature_acts
    device = sae_in.device

    per_token_residual = (sae_out - sae_in).pow(2).sum(-1).flatten()
    per_token_variance = (sae_in - sae_in.mean(0)).pow(2).sum(-1).flatten()
    device_values: dict[str, torch.Tensor] = {
        "losses/overall_loss": output.loss.detach().float(),
        **{f"losses/{name}": _as_scalar_tensor(value, device) for name, value in output.losses.items()},
        "metrics/explained_variance": 1 - per_token_residual.mean() / per_token_variance.mean(),
        "metrics/explained_variance_legacy": (1 - per_token_residual / per_token_variance).mean(),
        "metrics/l0": (feature_acts != 0).sum(-1).float().mean(),
        **{f"metrics/{name}": _as_scalar_tensor(value, device) for name, value in output.metrics.items()},
        "sparsity/mean_passes_since_fired": passes_since_fired.float().mean(),
        "sparsity/dead_features": dead_mask.sum().float(),
    }
    stacked = torch.stack([value.to(device) for value in device_values.values()])
    values = (stacked if reduce is None else reduce(stacked)).tolist()
    log = dict(zip(device_values, values))
    log["details/current_learning_rate"] = learning_rate
    log["details/n_training_tokens"] = n_training_tokens
    log["details/n_training_samples"] = n_training_tokens
    log.update({f"details/{name}_coefficient": value for name, value in coefficients.items()})
    return log
