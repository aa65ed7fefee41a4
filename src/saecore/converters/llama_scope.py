"""OpenMOSS Llama Scope: JumpReLU SAEs trained on activations scaled to norm √d_model.

Both generations store ``nn.Linear`` layers (``encoder.weight [d_sae, d_in]``,
``encoder.bias``, ``decoder.weight [d_in, d_sae]``, ``decoder.bias``) in safetensors and
never centre their input:

- ``llama_scope`` (Llama Scope, Llama 3.1 8B): ``hyperparams.json`` +
  ``checkpoints/final.safetensors``. One scalar ``jump_relu_threshold`` for every latent,
  stated for normalised inputs; it is multiplied by the norm scaling factor
  ``√d_model / dataset_average_activation_norm.in`` so that folding that factor into the
  encoder (below) keeps every latent's gate where it was.
- ``llama_scope_r1_distill`` (Llama Scope R1 Distill): ``config.json`` +
  ``sae_weights.safetensors``, with per-latent ``log_jumprelu_threshold``.

Both load with ``normalize_activations: expected_average_only_in``: a release directory
entry's ``norm_scaling_factor`` is then folded into the weights, so the SAE takes raw
activations. The hook each SAE reads is the file's ``hook_point_in``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saecore.converters.tensors import converted_cfg, from_linear_layers, linear_layer_names, require_tensors
from saecore.errors import SAEFileError
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter
from saecore.io.sae_files import read_cfg_json, read_safetensors

LLAMA_SCOPE_CFG_FILENAME = "hyperparams.json"
LLAMA_SCOPE_WEIGHTS_FILENAME = "checkpoints/final.safetensors"
R1_DISTILL_CFG_FILENAME = "config.json"
R1_DISTILL_WEIGHTS_FILENAME = "sae_weights.safetensors"
_LINEAR = linear_layer_names("encoder", "decoder")
_METADATA = {"model_name": "meta-llama/Llama-3.1-8B", "prepend_bos": True, "dataset_path": "cerebras/SlimPajama-627B",
             "context_size": 1024}


class LlamaScopeConverter(SAEConverter):
    """Reads a Llama Scope folder as a ``jumprelu`` SAE with one threshold for every latent."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        cfg_path = locate(LLAMA_SCOPE_CFG_FILENAME, True)
        weights_path = locate(LLAMA_SCOPE_WEIGHTS_FILENAME, True)
        assert cfg_path is not None and weights_path is not None
        hyperparams = read_cfg_json(cfg_path)
        d_model = _number(hyperparams, ("d_model",), cfg_path)
        norm_in = _number(hyperparams, ("dataset_average_activation_norm", "in"), cfg_path)
        threshold = _number(hyperparams, ("jump_relu_threshold",), cfg_path, allow_zero=True) * d_model**0.5 / norm_in
        raw = read_safetensors(weights_path)
        require_tensors(raw, _LINEAR, weights_path, "Llama Scope")
        state_dict = from_linear_layers(raw, "encoder", "decoder")
        state_dict["threshold"] = torch.full_like(state_dict["b_enc"], threshold)
        return _converted(state_dict, hyperparams, cfg_path, weights_path)


class LlamaScopeR1DistillConverter(SAEConverter):
    """Reads a Llama Scope R1 Distill folder as a ``jumprelu`` SAE."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        cfg_path = locate(R1_DISTILL_CFG_FILENAME, True)
        weights_path = locate(R1_DISTILL_WEIGHTS_FILENAME, True)
        assert cfg_path is not None and weights_path is not None
        config = read_cfg_json(cfg_path)
        raw = read_safetensors(weights_path)
        require_tensors(raw, (*_LINEAR, "log_jumprelu_threshold"), weights_path, "Llama Scope R1 Distill")
        state_dict = from_linear_layers(raw, "encoder", "decoder")
        state_dict["threshold"] = raw["log_jumprelu_threshold"].exp()
        return _converted(state_dict, config, cfg_path, weights_path)


def _converted(state_dict: dict[str, torch.Tensor], config: dict[str, Any], cfg_path: Path,
               weights_path: Path) -> ConvertedSAE:
    metadata = dict(_METADATA)
    if isinstance(config.get("hook_point_in"), str):
        metadata["hook_name"] = config["hook_point_in"]
    cfg_dict = converted_cfg("jumprelu", state_dict, weights_path, apply_b_dec_to_input=False, metadata=metadata)
    cfg_dict["normalize_activations"] = "expected_average_only_in"
    return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                        cfg_source=str(cfg_path), weights_source=str(weights_path))


def _number(config: dict[str, Any], keys: tuple[str, ...], cfg_path: Path, allow_zero: bool = False) -> float:
    value: Any = config
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (value == 0 and not allow_zero):
        allowed = "a number >= 0" if allow_zero else "a positive number"
        raise SAEFileError(f"{cfg_path}: {'.'.join(keys)} = {value!r}; expected {allowed}")
    return float(value)
