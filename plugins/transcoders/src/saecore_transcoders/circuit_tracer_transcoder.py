"""circuit-tracer's single-layer transcoders (``mwhanna/qwen3-*-transcoders``), registered as ``mwhanna_transcoder``.

A repo publishes one ``layer_N.safetensors`` per layer, written by circuit-tracer's
``SingleLayerTranscoder.to_safetensors``: ``W_enc [d_sae, d_in]`` (an ``nn.Linear`` weight),
``W_dec [d_sae, d_out]``, ``b_enc``, ``b_dec`` and, where trained with them, a skip
connection ``W_skip [d_out, d_in]`` and a JumpReLU ``activation_function.threshold``.
The transcoder reads the MLP input (``blocks.N.mlp.hook_in``, before any layer-norm fold, so
the model loads with ``fold_ln=False``) and predicts the MLP output.

Beside the files, ``wandb-config.yaml`` (spelt ``wanb-config.yaml`` in some repos) records
``d_model``, ``d_feature`` and ``batch_size`` (the training context, in tokens), and
``config.yaml`` the ``model_name``; repos without ``config.yaml`` name the Qwen3 size in the
repo id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from saecore.converters.tensors import converted_cfg, require_tensors
from saecore.errors import SAEFileError
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter
from saecore.io.sae_files import read_safetensors

WANDB_CONFIG_FILENAMES = ("wandb-config.yaml", "wanb-config.yaml")
MODEL_CONFIG_FILENAME = "config.yaml"
_TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec")
_THRESHOLD = "activation_function.threshold"
_LAYER_FILE = re.compile(r"layer_(\d+)\.safetensors")
_QWEN3_SIZE = re.compile(r"qwen3-(\d+(?:\.\d+)?)b")


class CircuitTracerTranscoderConverter(SAEConverter):
    """Reads a circuit-tracer ``layer_N.safetensors`` as a (skip, JumpReLU) transcoder."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        weights_path = locate.sae_file()
        raw = read_safetensors(weights_path)
        require_tensors(raw, _TENSORS, weights_path, "circuit-tracer transcoder")
        state_dict = {"W_enc": raw["W_enc"].T.contiguous(), "W_dec": raw["W_dec"], "b_enc": raw["b_enc"],
                      "b_dec": raw["b_dec"]}
        skip = "W_skip" in raw
        jumprelu = _THRESHOLD in raw
        if skip:
            state_dict["W_skip"] = raw["W_skip"]
        if jumprelu:
            state_dict["threshold"] = raw[_THRESHOLD]
        architecture = ("jumprelu_" if jumprelu else "") + ("skip_transcoder" if skip else "transcoder")
        wandb_path = next(filter(None, (locate.beside(name, False) for name in WANDB_CONFIG_FILENAMES)), None)
        cfg_path = wandb_path or weights_path
        metadata = _metadata(locate, weights_path, wandb_path)
        cfg_dict = converted_cfg(architecture, state_dict, weights_path, apply_b_dec_to_input=False,
                                 metadata=metadata, d_out=state_dict["W_dec"].shape[-1])
        return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                            cfg_source=str(cfg_path), weights_source=str(weights_path))


def _metadata(locate: FileLocator, weights_path: Path, wandb_path: Path | None) -> dict[str, Any]:
    """Hooks from the file's layer, the model from config.yaml or the repo id, the context from the W&B config."""
    metadata: dict[str, Any] = {"prepend_bos": True, "dataset_path": "monology/pile-uncopyrighted",
                                "model_from_pretrained_kwargs": {"fold_ln": False}}
    layer = _LAYER_FILE.fullmatch(weights_path.name) or _LAYER_FILE.search(locate.sae_path)
    if layer is not None:
        metadata["hook_name"] = f"blocks.{layer.group(1)}.mlp.hook_in"
        metadata["hook_name_out"] = f"blocks.{layer.group(1)}.hook_mlp_out"
    if wandb_path is not None:
        batch_size = read_yaml(wandb_path).get("batch_size")
        if isinstance(batch_size, dict) and "value" in batch_size:
            metadata["context_size"] = batch_size["value"]
    model_cfg_path = locate.beside(MODEL_CONFIG_FILENAME, False)
    model_name = read_yaml(model_cfg_path).get("model_name") if model_cfg_path is not None else None
    size = _QWEN3_SIZE.search(locate.root.lower())
    if model_name is None and size is not None:
        model_name = f"Qwen/Qwen3-{size.group(1)}B"
    if isinstance(model_name, str):
        metadata["model_name"] = model_name
    return metadata


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SAEFileError(f"{path}: not a readable YAML file ({error})") from None
    if not isinstance(content, dict):
        raise SAEFileError(f"{path}: expected a YAML mapping")
    return content
