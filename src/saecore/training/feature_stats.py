"""Per-latent firing statistics: which latents are dead, and how often each fires.

* ``n_forward_passes_since_fired`` grows by one each step and drops to 0 for every
  latent that fired anywhere in the batch; a latent is dead once it exceeds
  ``dead_feature_window`` steps. The dead mask feeds AuxK and pre-activation losses.
* Firing frequencies accumulate over ``feature_sampling_window`` steps and are then
  reset; the last window becomes the saved ``sparsity.safetensors``
  (``log10(frequency + 1e-10)``).

Updates are device ops only (``masked_fill_``, no boolean indexing), so the step loop
never waits for the device here.
"""

from __future__ import annotations

from typing import Any

import torch

LOG_SPARSITY_EPS = 1e-10


class FeatureStats:
    def __init__(self, d_sae: int, dead_feature_window: int, device: torch.device | str) -> None:
        self.d_sae = d_sae
        self.dead_feature_window = dead_feature_window
        self.n_forward_passes_since_fired = torch.zeros(d_sae, device=device)
        self.act_freq_scores = torch.zeros(d_sae, device=device)
        self.n_frac_active_samples = 0

    @torch.no_grad()
    def update(self, firing_counts: torch.Tensor, batch_size: int) -> None:
        """Record one step: ``firing_counts[i]`` = inputs of the batch latent i fired on."""
        if firing_counts.is_sparse:
            firing_counts = firing_counts.to_dense()
        self.n_forward_passes_since_fired.add_(1).masked_fill_(firing_counts > 0, 0)
        self.act_freq_scores.add_(firing_counts)
        self.n_frac_active_samples += batch_size

    def dead_mask(self) -> torch.Tensor:
        return self.n_forward_passes_since_fired > self.dead_feature_window

    @property
    def feature_sparsity(self) -> torch.Tensor:
        """Firing frequency of each latent over the current window (0 before any step)."""
        return self.act_freq_scores / max(self.n_frac_active_samples, 1)

    @property
    def log_feature_sparsity(self) -> torch.Tensor:
        """``log10(frequency + 1e-10)`` on the CPU: the contents of sparsity.safetensors."""
        return torch.log10(self.feature_sparsity + LOG_SPARSITY_EPS).detach().cpu()

    def reset_window(self) -> None:
        self.act_freq_scores.zero_()
        self.n_frac_active_samples = 0

    def window_log(self) -> tuple[dict[str, float], torch.Tensor]:
        """Scalars logged at the end of each sampling window, and the log-density histogram data."""
        sparsity = self.feature_sparsity
        log_sparsity = torch.log10(sparsity + LOG_SPARSITY_EPS)
        values = torch.stack([
            log_sparsity.mean(),
            (sparsity < 1e-5).sum().float(),
            (sparsity < 1e-6).sum().float(),
        ]).tolist()
        scalars = {
            "metrics/mean_log10_feature_sparsity": values[0],
            "sparsity/below_1e-5": values[1],
            "sparsity/below_1e-6": values[2],
        }
        return scalars, log_sparsity.cpu()

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_forward_passes_since_fired": self.n_forward_passes_since_fired.clone(),
            "act_freq_scores": self.act_freq_scores.clone(),
            "n_frac_active_samples": self.n_frac_active_samples,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.act_freq_scores.device
        passes = state["n_forward_passes_since_fired"].to(device)
        if tuple(passes.shape) != (self.d_sae,):
            raise ValueError(f"feature stats are for d_sae={passes.shape[0]}, but this SAE has d_sae={self.d_sae}")
        self.n_forward_passes_since_fired = passes.float()
        self.act_freq_scores = state["act_freq_scores"].to(device).float()
        self.n_frac_active_samples = int(state["n_frac_active_samples"])
