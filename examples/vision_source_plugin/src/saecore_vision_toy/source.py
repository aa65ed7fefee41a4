"""The ``vision_toy`` source: rows of a CNN layer's feature maps, captured with a forward hook.

Each spatial position of the hooked layer's ``[N, C, H, W]`` output is one activation
vector of width ``C`` (the way each token position of a language model is one), so an
image gives ``H·W`` rows. Batches are served from a buffer that is refilled by running
the model on ``images_per_chunk`` fresh images at a time; each chunk's rows are shuffled
so a batch mixes images and positions.

Everything random (images, shuffles) comes from one CPU generator seeded with the run's
seed, so batches are reproducible on any device, and ``state_dict`` (the generator state
and the buffered rows) resumes exactly.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from saecore import ActivationSource, ConfigError, SourceConfig
from saecore_vision_toy.images import draw_images
from saecore_vision_toy.model import build_model

Layer = Literal["conv1", "act1", "conv2", "act2"]


class VisionToySourceConfig(SourceConfig):
    """Which model, which layer, which images."""

    layer: Layer = Field(default="act2", description="Hooked submodule of the CNN (conv1, act1, conv2, act2).")
    image_size: int = Field(default=16, ge=4, description="Height and width of the synthetic images (even).")
    images_per_chunk: int = Field(default=32, gt=0, description="Images run through the model per buffer refill.")
    conv1_channels: int = Field(default=16, gt=0, description="Channels of the first conv block.")
    conv2_channels: int = Field(default=32, gt=0, description="Channels of the second conv block.")
    model_seed: int = Field(default=0, description="Seeds the CNN's random weights (ignored with weights_path).")
    weights_path: str | None = Field(default=None, description="A state dict (torch.save) of a trained ToyCNN.")

    @model_validator(mode="after")
    def _even_image_size(self) -> VisionToySourceConfig:
        if self.image_size % 2:
            raise ValueError(f"field 'image_size' = {self.image_size}: must be even (the first block halves it)")
        return self


class _StopForward(Exception):
    """Raised by the hook once the layer's output is captured: the rest of the model is not needed."""


class VisionToySource(ActivationSource):
    """Serves ``[n, C]`` rows of the hooked layer's activations."""

    cfg: VisionToySourceConfig

    def __init__(self, cfg: VisionToySourceConfig, *, seed: int = 42, device: str = "cpu") -> None:
        super().__init__(cfg, seed=seed, device=device)
        self.model = build_model(cfg.conv1_channels, cfg.conv2_channels, cfg.model_seed, cfg.weights_path)
        self.model.to(self.device)
        self._captured: torch.Tensor | None = None
        self._hook = self.layer_module.register_forward_hook(self._capture)
        self._generator = torch.Generator().manual_seed(seed)
        self._buffer = torch.empty(0, self.d_in, device=self.device)

    @property
    def layer_module(self) -> nn.Module:
        module: nn.Module = getattr(self.model, self.cfg.layer)
        return module

    @property
    def d_in(self) -> int:
        return self.cfg.conv1_channels if self.cfg.layer in ("conv1", "act1") else self.cfg.conv2_channels

    def _capture(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        self._captured = output.detach()
        raise _StopForward

    @torch.no_grad()
    def feature_maps(self, images: torch.Tensor) -> torch.Tensor:
        """The hooked layer's output ``[N, C, H, W]`` for ``images`` (the model stops right after it)."""
        self._captured = None
        try:
            self.model(images.to(self.device))
        except _StopForward:
            pass
        assert self._captured is not None, "the forward hook did not run"
        captured, self._captured = self._captured, None
        return captured

    def _refill(self) -> None:
        images = draw_images(self._generator, self.cfg.images_per_chunk, self.cfg.image_size)
        rows = self.feature_maps(images).permute(0, 2, 3, 1).reshape(-1, self.d_in)
        order = torch.randperm(rows.shape[0], generator=self._generator).to(self.device)
        self._buffer = torch.cat([self._buffer, rows[order]])

    def next_batch(self, batch_size: int) -> torch.Tensor:
        while self._buffer.shape[0] < batch_size:
            self._refill()
        batch, self._buffer = self._buffer[:batch_size], self._buffer[batch_size:]
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"generator_state": self._generator.get_state(), "buffer": self._buffer.cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        buffer = state["buffer"]
        if buffer.ndim != 2 or buffer.shape[1] != self.d_in:
            raise ConfigError(
                f"vision_toy: the saved position holds rows of width {list(buffer.shape)[1:]}, but layer "
                f"{self.cfg.layer!r} gives {self.d_in}; resume with the same source config"
            )
        self._generator.set_state(state["generator_state"])
        self._buffer = buffer.to(self.device)

    def sae_metadata(self) -> dict[str, Any]:
        return {"model_name": "vision-toy-cnn", "hook_name": self.cfg.layer, "dataset_path": "synthetic-images"}

    def close(self) -> None:
        self._hook.remove()
