"""The published temporal SAE format (``canrager/temporalSAEs``), registered as the ``temporal`` converter.

One folder per SAE (``<model>/layer_<N>/temporal``) holds ``conf.yaml`` and
``latest_ckpt.safetensors``. The checkpoint names the decoder ``D [d_sae, d_in]``, the
bias ``b [d_in]``, an untied encoder ``E [d_in, d_sae]`` and the attention layers
``attn_layers.*`` (kept as they are). ``conf.yaml`` gives the sizes and options; the
inputs are rescaled by its ``sae.scaling_factor`` (``constant_scalar_rescale``). The
layer, and so the hook ``blocks.<N>.hook_resid_post``, comes from the innermost folder
on the path named ``layer_<N>``; a path without one leaves the hook to the caller.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from saecore.converters.tensors import require_tensors
from saecore.errors import SAEFileError
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter
from saecore.io.sae_files import read_safetensors

TEMPORAL_CONFIG_FILENAME = "conf.yaml"
TEMPORAL_WEIGHTS_FILENAME = "latest_ckpt.safetensors"
_CONFIG_KEYS = {
    "llm": ("dimin",),
    "data": ("dtype",),
    "sae": ("exp_factor", "n_heads", "n_attn_layers", "bottleneck_factor", "sae_diff_type", "kval_topk",
            "tied_weights", "scaling_factor"),
}
_LAYER_PART = re.compile(r"layer_(\d+)")


class TemporalConverter(SAEConverter):
    """Reads a published temporal SAE folder as a ``temporal`` SAE."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        config_path = locate(TEMPORAL_CONFIG_FILENAME, True)
        weights_path = locate(TEMPORAL_WEIGHTS_FILENAME, True)
        assert config_path is not None and weights_path is not None
        cfg_dict = temporal_cfg_dict(_read_config(config_path), config_path)
        raw = read_safetensors(weights_path)
        require_tensors(raw, ("D", "b"), weights_path, "temporal")
        state_dict = {name: tensor for name, tensor in raw.items() if name.startswith("attn_layers.")}
        state_dict["W_dec"] = raw["D"]
        state_dict["b_dec"] = raw["b"]
        if "E" in raw:
            state_dict["W_enc"] = raw["E"]
        return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                            cfg_source=str(config_path), weights_source=str(weights_path))


def temporal_cfg_dict(config: dict[str, Any], config_path: Path) -> dict[str, Any]:
    """The SAELens-v6 cfg of the SAE that ``conf.yaml`` (read into ``config``) describes."""
    for section, keys in _CONFIG_KEYS.items():
        found = config.get(section)
        missing = [key for key in keys if not isinstance(found, dict) or key not in found]
        if missing:
            raise SAEFileError(f"{config_path}: missing key(s) {[f'{section}.{key}' for key in missing]} "
                               "of the temporal format")
    llm, sae = config["llm"], config["sae"]
    metadata: dict[str, Any] = {}
    layer = _layer_of(config_path.parent)
    if layer is not None:
        metadata["hook_name"] = f"blocks.{layer}.hook_resid_post"
    return {
        "architecture": "temporal",
        "d_in": llm["dimin"],
        "d_sae": int(llm["dimin"] * sae["exp_factor"]),
        "n_heads": sae["n_heads"],
        "n_attn_layers": sae["n_attn_layers"],
        "bottleneck_factor": sae["bottleneck_factor"],
        "sae_diff_type": sae["sae_diff_type"],
        "kval_topk": sae["kval_topk"],
        "tied_weights": sae["tied_weights"],
        "dtype": config["data"]["dtype"],
        "device": "cpu",
        "normalize_activations": "constant_scalar_rescale",
        "activation_normalization_factor": sae["scaling_factor"],
        "apply_b_dec_to_input": True,
        "metadata": metadata,
    }


def _layer_of(folder: Path) -> int | None:
    """``N`` of the innermost folder named exactly ``layer_<N>`` on the path, if any."""
    for part in reversed(folder.parts):
        match = _LAYER_PART.fullmatch(part)
        if match:
            return int(match.group(1))
    return None


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SAEFileError(f"{path}: not a readable YAML file ({error})") from None
    if not isinstance(config, dict):
        raise SAEFileError(f"{path}: expected a YAML mapping with sections llm, data and sae")
    return config
