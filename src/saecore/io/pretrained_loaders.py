"""SAELens-style loader callables: what ``SAE.from_pretrained(..., converter=...)`` and
``SAE.load_from_disk(..., converter=...)`` accept besides a registered converter's name.

SAELens 6 passes loading functions around as values. A Hub loader is called with
``(repo_id, folder_name, device, force_download, cfg_overrides)`` and returns
``(cfg_dict, state_dict, log_sparsity or None)``; a disk loader is called with
``(path, device, cfg_overrides)`` and returns ``(cfg_dict, state_dict)``. User code that
wrote its own loader for SAELens passes it to saecore unchanged, and the two loaders of
SAELens's native format are here, reading through saecore's own converter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from saecore.dtypes import dtype_from_name
from saecore.io.converters import ConvertedSAE, SAELensConverter, folder_locator
from saecore.io.hub import hub_locator


class PretrainedSaeHuggingfaceLoader(Protocol):
    """Reads one SAE folder of a Hugging Face Hub repo into a SAELens v6 cfg dict and state dict."""

    def __call__(
        self,
        repo_id: str,
        folder_name: str,
        device: str,
        force_download: bool,
        cfg_overrides: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor], torch.Tensor | None]: ...


class PretrainedSaeDiskLoader(Protocol):
    """Reads one SAE folder on disk into a SAELens v6 cfg dict and state dict."""

    def __call__(
        self,
        path: str | Path,
        device: str,
        cfg_overrides: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]: ...


def _loaded(converted: ConvertedSAE, device: str, cfg_overrides: dict[str, Any] | None) -> tuple[
    dict[str, Any], dict[str, torch.Tensor]
]:
    """The cfg dict with ``device`` and the overrides applied, and the tensors on ``device`` in the cfg's dtype."""
    cfg_dict = {**converted.cfg_dict, "device": device, **(cfg_overrides or {})}
    dtype = dtype_from_name(str(cfg_dict.get("dtype", "float32")))
    state_dict = {name: tensor.to(device=device, dtype=dtype) if tensor.is_floating_point() else tensor.to(device)
                  for name, tensor in converted.state_dict.items()}
    return cfg_dict, state_dict


def sae_lens_huggingface_loader(
    repo_id: str,
    folder_name: str,
    device: str = "cpu",
    force_download: bool = False,
    cfg_overrides: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], torch.Tensor | None]:
    """Read a SAELens-format SAE (cfg.json, sae_weights.safetensors, sparsity.safetensors) from a Hub repo folder."""
    converted = SAELensConverter().convert(hub_locator(repo_id, folder_name, force_download=force_download,
                                                      revision=None))
    cfg_dict, state_dict = _loaded(converted, device, cfg_overrides)
    sparsity = converted.sparsity.to(device) if converted.sparsity is not None else None
    return cfg_dict, state_dict, sparsity


def sae_lens_disk_loader(
    path: str | Path,
    device: str = "cpu",
    cfg_overrides: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a SAELens-format SAE folder (cfg.json and sae_weights.safetensors) from disk."""
    return _loaded(SAELensConverter().convert(folder_locator(Path(path))), device, cfg_overrides)
