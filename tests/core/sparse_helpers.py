"""What the toolkit's tests share: seeded generators and a float64 standard SAE with random parameters."""

from __future__ import annotations

from typing import Any

import torch

from saecore import TrainingSAE


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_standard_sae(d_in: int, d_sae: int, first_seed: int, **cfg: Any) -> TrainingSAE[Any]:
    """Parameter ``i`` (in ``parameters()`` order) drawn from ``N(0, 1)`` with seed ``first_seed + i``."""
    sae = TrainingSAE.from_dict({"architecture": "standard", "d_in": d_in, "d_sae": d_sae, **cfg}).double()
    with torch.no_grad():
        for index, param in enumerate(sae.parameters()):
            param.copy_(torch.randn(param.shape, generator=generator(first_seed + index), dtype=torch.float64))
    return sae
