"""Float64 references of the per-token input normalisations, for plugins' numerical tests.

Written from the formulas (SAELens v6 semantics, ``../shared/reference``), not from
saecore's implementation, so a test that normalises its reference input with them checks
the SAE under test against something independent.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

LAYER_NORM_EPS = 1e-5


def reference_normalization(
    x: torch.Tensor, mode: str
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``(normalised x, undo)`` for ``normalize_activations = mode``, per token (last dimension).

    - ``constant_norm_rescale``: ``x · √d / ‖x‖``; ``undo`` divides by the same factor;
    - ``layer_norm``: ``(x − μ) / (σ + 1e-5)`` with the unbiased ``σ``; ``undo`` multiplies
      by ``σ`` and adds ``μ`` back;
    - any other mode (``none``, or ``expected_average_only_in``, whose constant scale the
      trainer applies to the data, not the SAE): ``x`` unchanged.
    """
    if mode == "constant_norm_rescale":
        scale = x.shape[-1] ** 0.5 / x.pow(2).sum(-1, keepdim=True).sqrt()
        return x * scale, lambda y: y / scale
    if mode == "layer_norm":
        mu = x.mean(-1, keepdim=True)
        sd = ((x - mu).pow(2).sum(-1, keepdim=True) / (x.shape[-1] - 1)).sqrt()
        return (x - mu) / (sd + LAYER_NORM_EPS), lambda y: y * sd + mu
    return x, lambda y: y
