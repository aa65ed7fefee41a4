"""One layer of a published cross-layer transcoder (``mntss/clt-*``), registered as ``mntss_clt_layer_transcoder``.

The repo holds, per layer ``N`` (the SAE path is the layer number), ``W_enc_N.safetensors`` with
``W_enc_N [d_sae, d_in]``, ``b_enc_N`` and ``b_dec_N [d_out]``, and ``W_dec_N.safetensors`` with
``W_dec_N [d_sae, n_layers_written, d_out]``: the layer's features write to it and every later
layer. ``config.yaml`` names the model and the hooks read (``feature_input_hook``) and written
(``feature_output_hook``).

Loaded as a single-layer ReLU ``transcoder`` whose decoder is the sum over the layers written to,
so its feature activations are the cross-layer transcoder's, but its output is no layer's
reconstruction; a UserWarning says so at every load.
"""

from __future__ import annotations

import warnings
from typing import Any

from saecore.converters.tensors import converted_cfg, require_tensors
from saecore.errors import SAEFileError
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter
from saecore.io.sae_files import read_safetensors
from saecore_transcoders.circuit_tracer_transcoder import MODEL_CONFIG_FILENAME, read_yaml

_CONFIG_KEYS = ("model_name", "feature_input_hook", "feature_output_hook")


class CrossLayerTranscoderLayerConverter(SAEConverter):
    """Reads layer ``N`` of a cross-layer transcoder as a ``transcoder`` with its decoders summed."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        layer = locate.sae_path
        if not layer.isdigit():
            raise SAEFileError(f"{locate.names()}: a cross-layer transcoder's SAE path is its layer number "
                               f"(for example '3'), got {layer!r}")
        warnings.warn("A cross-layer transcoder layer loads as a single-layer transcoder whose decoder is the sum "
                      "of its decoders to every later layer: use it for feature activations, not reconstructions",
                      UserWarning, stacklevel=2)
        encoder_path = locate.beside(f"W_enc_{layer}.safetensors", True)
        decoder_path = locate.beside(f"W_dec_{layer}.safetensors", True)
        config_path = locate.beside(MODEL_CONFIG_FILENAME, True)
        assert encoder_path is not None and decoder_path is not None and config_path is not None
        encoder = read_safetensors(encoder_path)
        decoder = read_safetensors(decoder_path)
        require_tensors(encoder, (f"W_enc_{layer}", f"b_enc_{layer}", f"b_dec_{layer}"), encoder_path,
                        "cross-layer transcoder")
        require_tensors(decoder, (f"W_dec_{layer}",), decoder_path, "cross-layer transcoder")
        state_dict = {"W_enc": encoder[f"W_enc_{layer}"].T.contiguous(), "b_enc": encoder[f"b_enc_{layer}"],
                      "W_dec": decoder[f"W_dec_{layer}"].sum(dim=1), "b_dec": encoder[f"b_dec_{layer}"]}
        config = read_yaml(config_path)
        missing = [key for key in _CONFIG_KEYS if key not in config]
        if missing:
            raise SAEFileError(f"{config_path}: missing key(s) {missing} of the cross-layer transcoder config")
        metadata: dict[str, Any] = {
            "model_name": config["model_name"],
            "hook_name": f"blocks.{layer}.{config['feature_input_hook']}",
            "hook_name_out": f"blocks.{layer}.{config['feature_output_hook']}",
            "model_from_pretrained_kwargs": {"fold_ln": False},
            "prepend_bos": True,
        }
        cfg_dict = converted_cfg("transcoder", state_dict, encoder_path, apply_b_dec_to_input=False,
                                 metadata=metadata, d_out=state_dict["W_dec"].shape[-1])
        return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                            cfg_source=str(config_path), weights_source=f"{encoder_path}, {decoder_path}")
