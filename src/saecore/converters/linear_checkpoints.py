"""One pickled ``nn.Linear`` encoder/decoder pair per SAE, read as ``standard`` without input centring.

Two publishers use this shape, each with its own tensor names; the file's name says the
layer, read at the residual stream after that block:

- ``goodfire`` (Goodfire's Llama 3.x Instruct SAEs): ``encoder_linear.*`` and
  ``decoder_linear.*`` in ``{Model}-SAE-l{layer}.pt`` (or ``.pth``); the model is the name
  before ``-SAE``; trained on LMSYS-Chat-1M.
- ``deepseek_r1`` (qresearch's DeepSeek R1 Distill Llama 8B SAE): ``encoder.*`` and
  ``decoder.*`` in ``...-l{layer}.pt``; trained on LMSYS-Chat-1M.

The formula is ``ReLU(x Wₑᵀ + bₑ)``, decoded by ``f W_dᵀ + b_d``: SAELens's ``standard``
with ``apply_b_dec_to_input=False`` once the matrices are transposed.
"""

from __future__ import annotations

import posixpath
import re
from abc import abstractmethod
from typing import Any

from saecore.converters.pickled_state import load_pickled_state_dict
from saecore.converters.tensors import converted_cfg, from_linear_layers, linear_layer_names, require_tensors
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter

_DATASET = "lmsys/lmsys-chat-1m"


class _LinearCheckpointConverter(SAEConverter):
    encoder: str
    decoder: str
    label: str

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        weights_path = locate.sae_file()
        raw = load_pickled_state_dict(weights_path)
        require_tensors(raw, linear_layer_names(self.encoder, self.decoder), weights_path, self.label)
        state_dict = from_linear_layers(raw, self.encoder, self.decoder)
        metadata: dict[str, Any] = {"dataset_path": _DATASET, "prepend_bos": True,
                                    **self.metadata(posixpath.basename(locate.sae_path))}
        cfg_dict = converted_cfg("standard", state_dict, weights_path, apply_b_dec_to_input=False, metadata=metadata)
        return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                            cfg_source=str(weights_path), weights_source=str(weights_path))

    @abstractmethod
    def metadata(self, filename: str) -> dict[str, Any]:
        """What the file's name says about the model and hook."""


class GoodfireConverter(_LinearCheckpointConverter):
    """Reads a Goodfire ``{Model}-SAE-l{layer}.pt``."""

    encoder, decoder, label = "encoder_linear", "decoder_linear", "Goodfire"

    def metadata(self, filename: str) -> dict[str, Any]:
        match = re.fullmatch(r"(.+)-SAE-l(\d+)\.pth?", filename)
        if match is None:
            return {}
        return {"model_name": f"meta-llama/{match.group(1)}", "hook_name": f"blocks.{match.group(2)}.hook_resid_post"}


class DeepSeekR1Converter(_LinearCheckpointConverter):
    """Reads qresearch's DeepSeek R1 Distill ``...-l{layer}.pt``."""

    encoder, decoder, label = "encoder", "decoder", "DeepSeek R1 SAE"

    def metadata(self, filename: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {"model_name": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "context_size": 1024}
        layer = re.search(r"l(\d+)", filename)
        if layer is not None:
            metadata["hook_name"] = f"blocks.{layer.group(1)}.hook_resid_post"
        return metadata
