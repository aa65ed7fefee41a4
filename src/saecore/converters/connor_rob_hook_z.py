"""Connor Kissane and Rob Krzyzanowski's GPT-2 small attention SAEs (``connor_rob_hook_z``).

Each SAE is one pickled state dict, ``{name}.pt``, already in SAELens's tensor names and
layout (``W_enc [d_in, d_sae]``, ``W_dec``, ``b_enc``, ``b_dec``), beside ``{name}_cfg.json``
(``act_size`` = d_in, ``dict_size`` = d_sae, ``act_name`` = the hook). The SAE is
``standard`` with input centring, read at ``attn.hook_z`` with the heads flattened
(``reshape_activations: hook_z``); trained on OpenWebText with 128-token contexts.
"""

from __future__ import annotations

import posixpath
from typing import Any

from saecore.converters.pickled_state import load_pickled_state_dict
from saecore.converters.tensors import converted_cfg, require_tensors
from saecore.errors import SAEFileError
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter
from saecore.io.sae_files import read_cfg_json

_TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec")


class ConnorRobHookZConverter(SAEConverter):
    """Reads ``{name}.pt`` and ``{name}_cfg.json`` as a ``standard`` SAE on flattened ``hook_z``."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        weights_path = locate.sae_file()
        cfg_path = locate.beside(posixpath.basename(locate.sae_path).split(".pt")[0] + "_cfg.json", True)
        assert cfg_path is not None
        config = read_cfg_json(cfg_path)
        raw = load_pickled_state_dict(weights_path)
        require_tensors(raw, _TENSORS, weights_path, "connor_rob_hook_z")
        state_dict = {name: raw[name] for name in _TENSORS}
        d_in, d_sae = state_dict["W_enc"].shape
        if (config.get("act_size"), config.get("dict_size")) != (d_in, d_sae):
            raise SAEFileError(f"{cfg_path}: act_size = {config.get('act_size')!r}, dict_size = "
                               f"{config.get('dict_size')!r}, but {weights_path} holds W_enc of shape "
                               f"[{d_in}, {d_sae}]")
        metadata: dict[str, Any] = {"model_name": "gpt2-small", "prepend_bos": True,
                                    "dataset_path": "Skylion007/openwebtext", "context_size": 128}
        if isinstance(config.get("act_name"), str):
            metadata["hook_name"] = config["act_name"]
        cfg_dict = converted_cfg("standard", state_dict, weights_path, apply_b_dec_to_input=True, metadata=metadata)
        cfg_dict["reshape_activations"] = "hook_z"
        return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                            cfg_source=str(cfg_path), weights_source=str(weights_path))
