"""Gemma Scope transcoders (``google/gemma-scope-2b-pt-transcoders``), registered as ``gemma_2_transcoder``.

Each folder (``layer_N/width_16k/average_l0_L``) holds one ``params.npz``, as Gemma Scope's SAEs
do: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_out]``, ``b_enc``, ``b_dec [d_out]`` and
``threshold``. The transcoder is a JumpReLU reading the normalised MLP input
(``blocks.N.ln2.hook_normalized``) and predicting the MLP output (``blocks.N.hook_mlp_out``).
The archive says nothing about the model or layer: the repo name gives the model, the folder
(or, failing it, the repo) the layer.
"""

from __future__ import annotations

import re
from typing import Any

from saecore.converters.gemma_scope import GEMMA_SCOPE_PARAMS_FILENAME, read_npz
from saecore.converters.tensors import converted_cfg, require_tensors
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter

_TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
_MODEL = re.compile(r"gemma-scope-(\d+b)-(pt|it)")
_LAYER = re.compile(r"layer_(\d+)")


class GemmaScopeTranscoderConverter(SAEConverter):
    """Reads a Gemma Scope transcoder folder as a ``jumprelu_transcoder``."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        params_path = locate(GEMMA_SCOPE_PARAMS_FILENAME, True)
        assert params_path is not None
        state_dict = read_npz(params_path)
        require_tensors(state_dict, _TENSORS, params_path, "Gemma Scope transcoder")
        state_dict = {name: state_dict[name] for name in _TENSORS}
        cfg_dict = converted_cfg("jumprelu_transcoder", state_dict, params_path, apply_b_dec_to_input=False,
                                 metadata=_metadata(locate), d_out=state_dict["W_dec"].shape[-1])
        return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                            cfg_source=str(params_path), weights_source=str(params_path))


def _metadata(locate: FileLocator) -> dict[str, Any]:
    """Model from the repo name, hooks from the layer in the folder (or repo) name; left out where absent."""
    metadata: dict[str, Any] = {"prepend_bos": True, "dataset_path": "monology/pile-uncopyrighted",
                                "context_size": 1024}
    model = _MODEL.search(locate.root)
    if model is not None:
        metadata["model_name"] = f"gemma-2-{model.group(1)}" + ("-it" if model.group(2) == "it" else "")
    layer = _LAYER.search(locate.sae_path) or _LAYER.search(locate.root)
    if layer is not None:
        metadata["hook_name"] = f"blocks.{layer.group(1)}.ln2.hook_normalized"
        metadata["hook_name_out"] = f"blocks.{layer.group(1)}.hook_mlp_out"
    return metadata
