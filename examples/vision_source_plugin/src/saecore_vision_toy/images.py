"""Synthetic RGB images: coloured gratings and blobs on a noisy background.

Real image datasets are downloads; these are drawn from a seeded generator in a few
lines, and still have the structure a CNN responds to (edges at many orientations and
frequencies, colours, local blobs).
"""

from __future__ import annotations

import math

import torch


def draw_images(generator: torch.Generator, n: int, size: int) -> torch.Tensor:
    """``[n, 3, size, size]`` images in roughly ``[-1, 1]``, drawn on the CPU from ``generator``."""

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    coords = torch.linspace(-1.0, 1.0, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    angle = uniform(n, 1, 1, high=math.pi)
    frequency = uniform(n, 1, 1, low=1.0, high=6.0)
    phase = uniform(n, 1, 1, high=2 * math.pi)
    grating = torch.sin(frequency * math.pi * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase)
    centre = uniform(n, 2, 1, 1, low=-0.7, high=0.7)
    radius = uniform(n, 1, 1, low=0.15, high=0.5)
    blob = torch.exp(-((xx - centre[:, 0]) ** 2 + (yy - centre[:, 1]) ** 2) / (2 * radius**2))
    grating_colour = uniform(n, 3, 1, 1, low=-1.0, high=1.0)
    blob_colour = uniform(n, 3, 1, 1, low=-1.0, high=1.0)
    noise = 0.1 * torch.randn(n, 3, size, size, generator=generator)
    return grating_colour * grating.unsqueeze(1) * 0.6 + blob_colour * blob.unsqueeze(1) + noise
