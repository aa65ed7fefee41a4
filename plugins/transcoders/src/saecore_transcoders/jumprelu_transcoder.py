"""JumpReLU transcoders: ``f_i = h_i · 1[h_i > θ_i]`` with a learnt threshold per latent."""

from __future__ import annotations

import torch
from torch import nn

from saecore_transcoders.transcoder import SkipTranscoder, Transcoder


class JumpReLUTranscoder(Transcoder):
    """``architecture: "jumprelu_transcoder"``; ``threshold [d_sae]``."""

    threshold: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        self.threshold = nn.Parameter(self._zeros(self.cfg.d_sae))

    def activation(self, hidden_pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(hidden_pre) * (hidden_pre > self.threshold).to(hidden_pre.dtype)

    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        """Unit decoder rows; the thresholds scale with the pre-activations they compare with."""
        norms = self.fold_and_get_W_dec_norm()
        self.threshold.data.mul_(norms)


class JumpReLUSkipTranscoder(JumpReLUTranscoder, SkipTranscoder):
    """``architecture: "jumprelu_skip_transcoder"``: JumpReLU with a skip connection."""
