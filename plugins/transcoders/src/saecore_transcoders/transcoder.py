"""Inference transcoders: ``y ≈ act(x W_enc + b_enc) W_dec + b_dec (+ x W_skipᵀ)``.

A transcoder reads the activation at its input hook (``d_in``) and predicts the one at its
output hook (``d_out``): an MLP's input and output, say. Parameters follow SAELens 6.54:
``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_out]``, ``b_dec [d_out]`` and,
with a skip connection, ``W_skip [d_out, d_in]`` (zeros at initialisation). The activation
function is the one place the architectures differ (``activation``); ``decode`` goes
through the nonzeros only (``saecore.sparse.decode_product``), so TopK and JumpReLU codes
decode cheaply.

``forward`` has no error term: the error of a transcoder is measured against the model's
activation at the output hook, which the transcoder never sees; splicing supplies it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from saecore import SAE, ConfigError
from saecore.errors import SAEFileError
from saecore.sparse import decode_product
from saecore_transcoders.config import TranscoderConfig


class Transcoder(SAE[Any]):
    """ReLU transcoder (``architecture: "transcoder"``)."""

    cfg: TranscoderConfig
    b_enc: nn.Parameter

    def initialize_weights(self) -> None:
        """Kaiming-uniform ``W_enc`` and ``W_dec``, zero biases."""
        cfg = self.cfg
        w_enc = self._empty(cfg.d_in, cfg.d_sae)
        w_dec = self._empty(cfg.d_sae, cfg.d_out)
        if w_dec.device.type != "meta":
            nn.init.kaiming_uniform_(w_enc)
            nn.init.kaiming_uniform_(w_dec)
        self.W_enc = nn.Parameter(w_enc)
        self.b_enc = nn.Parameter(self._zeros(cfg.d_sae))
        self.W_dec = nn.Parameter(w_dec)
        self.b_dec = nn.Parameter(self._zeros(cfg.d_out))

    @property
    def d_out(self) -> int:
        return self.cfg.d_out

    def hidden_pre(self, x: torch.Tensor) -> torch.Tensor:
        """The hooked pre-activations ``x W_enc + b_enc``."""
        return self.hook_sae_acts_pre(self.process_sae_in(x) @ self.W_enc + self.b_enc)

    def activation(self, hidden_pre: torch.Tensor) -> torch.Tensor:
        """The activation function: ReLU here; the JumpReLU and TopK transcoders override it."""
        return torch.relu(hidden_pre)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_sae_acts_post(self.activation(self.hidden_pre(x)))

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """The prediction ``[..., d_out]`` without the skip connection (as SAELens's ``decode``)."""
        return self.finish_decode(decode_product(feature_acts, self.W_dec) + self.b_dec)

    def skip_prediction(self, x: torch.Tensor) -> torch.Tensor | None:
        """The skip connection's term of the prediction for input ``x``; None without one."""
        return None

    def add_skip(self, x: torch.Tensor, sae_out: torch.Tensor) -> torch.Tensor:
        """``sae_out`` plus the skip connection's term, if there is one."""
        skip = self.skip_prediction(x)
        return sae_out if skip is None else sae_out + skip

    def forward_with_activations(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prediction [..., d_out], feature activations [..., d_sae])``."""
        feature_acts = self.encode(x)
        return self.add_skip(x, self.decode(feature_acts)), feature_acts

    def process_state_dict_for_loading(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Refuse a skip transcoder's weights: dropping ``W_skip`` would silently change every prediction."""
        super().process_state_dict_for_loading(state_dict)
        if "W_skip" in state_dict and not hasattr(self, "W_skip"):
            architecture = self.cfg.architecture()
            raise SAEFileError(
                f"the weights hold W_skip {list(state_dict['W_skip'].shape)}, so they are a skip transcoder's, but "
                f"the config names the non-skip architecture {architecture!r}; load them as "
                f"{architecture.replace('transcoder', 'skip_transcoder')!r} (the cfg.json 'architecture')"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_error_term:
            raise ConfigError(
                f"{type(self).__name__}: use_error_term needs the model's activation at the output hook "
                f"({self.cfg.metadata.hook_name_out!r}), which a transcoder's forward does not receive; "
                "splice it into a model to get the error term, or set use_error_term=False"
            )
        return self.hook_sae_output(self.forward_with_activations(x)[0])


class SkipTranscoder(Transcoder):
    """Transcoder with a linear skip connection: adds ``x W_skipᵀ`` to the prediction."""

    W_skip: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        self.W_skip = nn.Parameter(self._zeros(self.cfg.d_out, self.cfg.d_in))

    def skip_prediction(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.W_skip.dtype) @ self.W_skip.T

    @torch.no_grad()
    def fold_activation_norm_scaling_factor(
        self, scaling_factor: float, target_scaling_factor: float | None = None
    ) -> None:
        """Also fold the scales into ``W_skip``, which maps ``s·x`` to ``t·y``."""
        output_scale = scaling_factor if target_scaling_factor is None else target_scaling_factor
        super().fold_activation_norm_scaling_factor(scaling_factor, target_scaling_factor)
        self.W_skip.data.mul_(scaling_factor / output_scale)
