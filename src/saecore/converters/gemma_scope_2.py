"""Gemma Scope 2 (SAEs of Gemma 3): ``params.safetensors`` and an optional ``config.json`` per folder.

The weights are ``w_enc [d_in, d_sae]``, ``w_dec [d_sae, d_out]``, ``b_enc``, ``b_dec`` and
``threshold``: a JumpReLU that never subtracts ``b_dec`` from its input, as in Gemma Scope.
``config.json`` says ``architecture: jump_relu``, the model and the Hugging Face module
the SAE reads (``hf_hook_point_in``); where it is absent the repo and folder names give them.

The folder names the site: ``resid_post``, ``attn_out`` (read at ``attn.hook_z``, flat),
``mlp_out``, or a transcoder (``transcoder``: MLP input to MLP output, with an affine skip
``affine_skip_connection [d_in, d_out]`` when config.json or the name says ``affine``).
Transcoders become the ``jumprelu_transcoder`` and ``jumprelu_skip_transcoder``
architectures, which their plugin provides.
"""

from __future__ import annotations

import re
from typing import Any

from saecore.converters.tensors import converted_cfg, require_tensors
from saecore.errors import SAEFileError
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter
from saecore.io.sae_files import read_cfg_json, read_safetensors

GEMMA_SCOPE_2_PARAMS_FILENAME = "params.safetensors"
GEMMA_SCOPE_2_CFG_FILENAME = "config.json"
_TENSORS = ("w_enc", "w_dec", "b_enc", "b_dec", "threshold")
# Folder-name tag → (TransformerLens hook, Hugging Face module read) of an SAE at layer {0}.
_SAE_SITES = {
    "resid_post": ("blocks.{0}.hook_resid_post", "model.layers.{0}.output"),
    "attn_out": ("blocks.{0}.attn.hook_z", "model.layers.{0}.self_attn.o_proj.input"),
    "mlp_out": ("blocks.{0}.hook_mlp_out", "model.layers.{0}.post_feedforward_layernorm.output"),
}
_TRANSCODER_HOOKS = ("blocks.{0}.hook_mlp_in", "blocks.{0}.hook_mlp_out")
_TRANSCODER_HF_HOOKS = ("model.layers.{0}.pre_feedforward_layernorm.output",
                        "model.layers.{0}.post_feedforward_layernorm.output")


class GemmaScope2Converter(SAEConverter):
    """Reads a Gemma Scope 2 folder as a ``jumprelu`` SAE (or a JumpReLU transcoder)."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        folder = _folder_name(locate)
        transcoder = "transcoder" in folder
        params_path = locate(GEMMA_SCOPE_2_PARAMS_FILENAME, True)
        cfg_path = locate(GEMMA_SCOPE_2_CFG_FILENAME, False)
        assert params_path is not None
        raw_cfg = read_cfg_json(cfg_path) if cfg_path is not None else {}
        if cfg_path is not None and raw_cfg.get("architecture") != "jump_relu":
            raise SAEFileError(f"{cfg_path}: architecture = {raw_cfg.get('architecture')!r}; "
                               "Gemma Scope 2 SAEs are 'jump_relu'")
        raw = read_safetensors(params_path)
        require_tensors(raw, _TENSORS, params_path, "Gemma Scope 2")
        state_dict = {"W_enc": raw["w_enc"], "W_dec": raw["w_dec"], "b_enc": raw["b_enc"],
                      "b_dec": raw["b_dec"], "threshold": raw["threshold"]}
        fields: dict[str, Any] = {}
        architecture = "jumprelu"
        if transcoder:
            affine = bool(raw_cfg.get("affine_connection", "affine" in folder))
            architecture = "jumprelu_skip_transcoder" if affine else "jumprelu_transcoder"
            fields["d_out"] = raw["w_dec"].shape[-1]
            if "affine_skip_connection" in raw:
                state_dict["W_skip"] = raw["affine_skip_connection"].T.contiguous()
        metadata = _metadata(folder, locate.repo_id, raw_cfg, transcoder)
        cfg_dict = converted_cfg(architecture, state_dict, params_path, apply_b_dec_to_input=False,
                                 metadata=metadata, **fields)
        return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                            cfg_source=str(cfg_path or params_path), weights_source=str(params_path))


def _folder_name(locate: FileLocator) -> str:
    """``site/layer_..._width_..._l0_...``: the last two names of the SAE's path, which say its site and layer."""
    return "/".join(locate.names().split("/")[-2:])


def _metadata(folder: str, repo_id: str | None, raw_cfg: dict[str, Any], transcoder: bool) -> dict[str, Any]:
    """Hooks from the folder name, the model from config.json or the repo name, and the training data."""
    metadata: dict[str, Any] = {"prepend_bos": True, "dataset_path": "monology/pile-uncopyrighted",
                                "context_size": 1024}
    layer = re.search(r"layer_(\d+)", folder)
    site = next((tag for tag in _SAE_SITES if tag in folder), None)
    if layer is not None and transcoder:
        metadata["hook_name"], metadata["hook_name_out"] = (h.format(layer.group(1)) for h in _TRANSCODER_HOOKS)
        hf_in, hf_out = (h.format(layer.group(1)) for h in _TRANSCODER_HF_HOOKS)
        metadata["hf_hook_name"] = raw_cfg.get("hf_hook_point_in", hf_in)
        metadata["hf_hook_name_out"] = raw_cfg.get("hf_hook_point_out", hf_out)
    elif layer is not None and site is not None:
        hook, hf_hook = (h.format(layer.group(1)) for h in _SAE_SITES[site])
        metadata["hook_name"] = hook
        metadata["hf_hook_name"] = raw_cfg.get("hf_hook_point_in", hf_hook)
    model_name = raw_cfg.get("model_name")
    if not isinstance(model_name, str) and repo_id is not None and "gemma-scope-2" in repo_id:
        model_name = repo_id.replace("gemma-scope-2", "gemma-3")
    if isinstance(model_name, str):
        metadata["model_name"] = _normalised_model_name(model_name)
    return metadata


def _normalised_model_name(name: str) -> str:
    """The Hugging Face model id the published ``model_name`` stands for."""
    name = (name if "google" in name else "google/" + name).replace("-v3", "-3")
    # The 270m model's repo has no -pt suffix.
    return name.replace("-pt", "") if "270m" in name else name
