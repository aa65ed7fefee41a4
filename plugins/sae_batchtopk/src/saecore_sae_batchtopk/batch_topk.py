"""The two pieces of BatchTopK that are not plain linear algebra: the selection and the threshold.

Both are public so that recipes built on BatchTopK (Matryoshka) reuse them instead of
re-deriving them.
"""

from __future__ import annotations

import torch


def batch_topk(scores: torch.Tensor, k: float) -> torch.Tensor:
    """``ReLU(scores)`` with all but its ``int(k·N)`` largest entries zeroed, over all ``N`` inputs at once.

    ``scores`` is ``[..., d_sae]``; the leading dimensions together count as the batch,
    so a ``[B, T, d_sae]`` input keeps ``k·B·T`` activations. An input may keep more or
    fewer than ``k`` latents: only the batch average is ``k``.
    """
    acts = scores.relu()
    flat = acts.flatten()
    n_keep = min(int(k * acts.shape[:-1].numel()), flat.numel())
    kept = flat.topk(n_keep, sorted=False)
    return torch.zeros_like(flat).scatter(0, kept.indices, kept.values).reshape(acts.shape)


@torch.no_grad()
def updated_threshold(threshold: torch.Tensor, feature_acts: torch.Tensor, lr: float) -> torch.Tensor:
    """``θ ← (1 − η)·θ + η·min(positive activations)``; ``θ`` is unchanged when nothing fired.

    Written with ``torch.where`` rather than an ``if``, so a training step never waits for
    the device to say whether anything fired. The result has ``threshold``'s dtype (float64:
    the moving average of small numbers loses its low bits in float32).
    """
    acts = feature_acts.detach()
    smallest = torch.where(acts > 0, acts, torch.inf).min().to(threshold.dtype)
    moved = (1 - lr) * threshold + lr * smallest
    return torch.where(torch.isfinite(smallest), moved, threshold)
