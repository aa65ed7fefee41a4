"""Independent float64 formulas of the architectures converters map onto, and shared test helpers."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from saecore.registry import get_registry
from saecore.sae import SAE


def require_architectures(*names: str) -> None:
    """Skip the calling test unless every named architecture plugin is installed; fail if one is broken."""
    registry = get_registry()
    missing = [name for name in names if name not in registry.architectures]
    if missing and registry.failures:
        pytest.fail(f"architecture(s) {missing} missing while plugins failed to load: "
                    + "; ".join(f"{f.plugin.describe()}: {f.error}" for f in registry.failures))
    if missing:
        pytest.skip(f"needs the architecture plugin(s) {missing}")


def float64_params(sae: SAE[Any]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().double() for name, tensor in sae.state_dict().items()}


def relu_reference(params: dict[str, torch.Tensor], x: torch.Tensor, centre: bool) -> torch.Tensor:
    """``ReLU((x − b_dec·centre) W_enc + b_enc)``."""
    x = x.double() - (params["b_dec"] if centre else 0)
    return torch.relu(x @ params["W_enc"] + params["b_enc"])


def jumprelu_reference(params: dict[str, torch.Tensor], x: torch.Tensor, centre: bool) -> torch.Tensor:
    """``ReLU(h)·1[h > θ]`` with ``h = (x − b_dec·centre) W_enc + b_enc``."""
    hidden = (x.double() - (params["b_dec"] if centre else 0)) @ params["W_enc"] + params["b_enc"]
    return torch.relu(hidden) * (hidden > params["threshold"])


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().double(), expected.detach().double()
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-30))
