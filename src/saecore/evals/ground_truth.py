"""How many known feature directions a trained decoder found.

Only a source with a ground truth (the synthetic toy model) can answer "did the SAE
learn the right features?"; this is the score: a true feature counts as recovered when
some decoder row points the same way, with cosine similarity at least ``threshold``.
The cosine is signed, because a decoder row pointing the opposite way reconstructs
nothing of a non-negative feature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from saecore.errors import ConfigError

# Cosine blocks are computed this many entries at a time, so a 16k × 65k comparison
# needs tens of MB instead of gigabytes.
_BLOCK_ENTRIES = 1 << 22


@dataclass(frozen=True)
class GroundTruthRecovery:
    """Recovery of the true features by a decoder."""

    fraction_recovered: float
    """Fraction of true features whose best decoder row has cosine ≥ ``threshold``."""
    mean_max_cosine: float
    """Mean over true features of the best cosine with any decoder row."""
    threshold: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def max_cosines(W_dec: torch.Tensor, true_features: torch.Tensor) -> torch.Tensor:
    """For each true feature, its largest cosine with any decoder row (float64 ``[n_features]``).

    Zero rows (a latent that never learned anything, or a zero feature) have cosine 0.
    """
    if W_dec.ndim != 2 or true_features.ndim != 2 or 0 in (W_dec.shape[0], true_features.shape[0]):
        raise ConfigError(
            f"ground truth recovery needs non-empty 2-D tensors: W_dec {list(W_dec.shape)} must be [d_sae, d_in] "
            f"and true_features {list(true_features.shape)} must be [n_features, d_in]"
        )
    if W_dec.shape[1] != true_features.shape[1]:
        raise ConfigError(
            f"ground truth recovery: W_dec is [d_sae, d_in={W_dec.shape[1]}] but true_features is "
            f"[n_features, d_in={true_features.shape[1]}]; they must share d_in"
        )
    decoder = _unit_rows(W_dec)
    features = _unit_rows(true_features.to(decoder.device))
    block = max(1, _BLOCK_ENTRIES // max(1, decoder.shape[0]))
    best = [(features[i:i + block] @ decoder.T).max(dim=1).values for i in range(0, features.shape[0], block)]
    return torch.cat(best).cpu()


def ground_truth_recovery(
    W_dec: torch.Tensor, true_features: torch.Tensor, threshold: float = 0.9
) -> GroundTruthRecovery:
    """Score ``W_dec [d_sae, d_in]`` against ``true_features [n_features, d_in]`` (float64 internally)."""
    if not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold={threshold} is not a cosine similarity; allowed: -1 to 1")
    best = max_cosines(W_dec, true_features)
    return GroundTruthRecovery(
        fraction_recovered=float((best >= threshold).double().mean()),
        mean_max_cosine=float(best.mean()),
        threshold=float(threshold),
    )


def _unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    rows = matrix.detach().to(torch.float64)
    norms = rows.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, rows / norms.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(rows))
