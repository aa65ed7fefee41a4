"""SAELens's functions that read an SAE folder of its own format piece by piece (cfg.json, then weights).

SAELens users call them to inspect a config before building the SAE, or to load weights
into their own modules. ``SAE.load_from_disk`` and ``SAE.from_pretrained`` do not use
them: the ``sae_lens`` converter reads and checks the whole folder at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import hf_hub_download

from saecore.dtypes import dtype_from_name
from saecore.io.format import SAE_CFG_FILENAME
from saecore.io.legacy_config import upgrade_pre_v6_config
from saecore.io.sae_files import drop_identity_scaling_factor, normalize_cfg_dict, read_safetensors


def load_safetensors_weights(
    path: str | Path, device: str = "cpu", dtype: torch.dtype | str | None = None
) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on ``device``, cast to ``dtype`` when given."""
    tensors = read_safetensors(Path(path), device=device)
    if dtype is None:
        return tensors
    target = dtype_from_name(dtype)
    return {name: tensor.to(dtype=target) for name, tensor in tensors.items()}


def get_sae_lens_config_from_disk(
    path: str | Path, device: str | None = None, cfg_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The folder's cfg.json as written, with ``device`` and then ``cfg_overrides`` set over it."""
    cfg_dict: dict[str, Any] = json.loads((Path(path) / SAE_CFG_FILENAME).read_text())
    if device is not None:
        cfg_dict["device"] = device
    cfg_dict.update(cfg_overrides or {})
    return cfg_dict


def get_sae_lens_config_from_hf(
    repo_id: str,
    folder_name: str,
    device: str | None = None,
    force_download: bool = False,
    cfg_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``get_sae_lens_config_from_disk`` of ``folder_name`` in the Hub repo ``repo_id`` (only cfg.json is fetched)."""
    filename = f"{folder_name}/{SAE_CFG_FILENAME}"
    cfg_path = hf_hub_download(repo_id=repo_id, filename=filename, force_download=force_download)
    return get_sae_lens_config_from_disk(Path(cfg_path).parent, device, cfg_overrides)


def handle_config_defaulting(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """A cfg.json written before SAELens 6.0 in the 6.x layout; a 6.x one unchanged."""
    return normalize_cfg_dict(cfg_dict)


def handle_pre_6_0_config(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """A cfg.json written before SAELens 6.0 in the 6.x layout: LLM facts under ``metadata``, TopK's ``k`` set.

    Metadata keys the old file does not state are left out, where SAELens adds ``neuronpedia_id: None``.
    """
    return upgrade_pre_v6_config(cfg_dict)


def read_sae_components_from_disk(
    cfg_dict: dict[str, Any], weight_path: str | Path, device: str = "cpu", dtype: torch.dtype | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(cfg_dict, state_dict)``: the weights in ``dtype`` (default: the config's), and SAELens 3-5's identity
    ``scaling_factor`` dropped, setting ``cfg_dict["finetuning_scaling_factor"] = False``.

    A ``scaling_factor`` other than ones is an ``SAEFileError``: no saecore architecture applies one.
    """
    target = dtype if dtype is not None else dtype_from_name(cfg_dict["dtype"])
    state_dict = load_safetensors_weights(weight_path, device=device, dtype=target)
    drop_identity_scaling_factor(state_dict, str(weight_path))
    cfg_dict["finetuning_scaling_factor"] = False
    return cfg_dict, state_dict
