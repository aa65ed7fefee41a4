"""A small CNN, standing in for the vision model whose activations you want to explain.

Two conv blocks and a linear head. Its weights are seeded (or loaded from a state dict
file), so the same config always gives the same model; a random CNN already has the
oriented-edge and colour detectors an SAE can find, and a trained one can be loaded
with ``weights_path``.
"""

from __future__ import annotations

import torch
from torch import nn

HOOKABLE_LAYERS = ("conv1", "act1", "conv2", "act2")


class ToyCNN(nn.Module):
    """``[N, 3, S, S]`` images → ``[N, n_classes]`` logits; every block is a named, hookable submodule."""

    def __init__(self, conv1_channels: int = 16, conv2_channels: int = 32, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, conv1_channels, kernel_size=3, padding=1)
        self.act1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(conv1_channels, conv2_channels, kernel_size=3, padding=1)
        self.act2 = nn.ReLU()
        self.pool2 = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(conv2_channels, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.act1(self.conv1(images)))
        x = self.pool2(self.act2(self.conv2(x)))
        return self.head(x.flatten(1))


def build_model(
    conv1_channels: int, conv2_channels: int, seed: int, weights_path: str | None = None
) -> ToyCNN:
    """The model in eval mode: seeded random weights, or the state dict saved at ``weights_path``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ToyCNN(conv1_channels, conv2_channels)
    if weights_path is not None:
        model.load_state_dict(torch.load(weights_path, weights_only=True, map_location="cpu"))
    return model.eval().requires_grad_(False)
