"""Converters: readers of published SAE formats, resolved by name.

A converter turns the files of one format into the SAELens-v6 shape the loader builds
from: a cfg dict and a state dict with SAELens tensor names. It asks for files through
a locator, so the same converter reads a local folder or a Hub repo (downloaded through
huggingface_hub, cached, offline-capable).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saecore.errors import SAEFileError
from saecore.io.format import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME
from saecore.io.sae_files import read_cfg_json, read_safetensors, read_sparsity_file

FileLocator = Callable[[str, bool], "Path | None"]
"""``locate(filename, required)``: the local path of a file of the SAE, or None if optional and absent."""


@dataclass
class ConvertedSAE:
    cfg_dict: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    sparsity: torch.Tensor | None
    cfg_source: str
    weights_source: str


class SAEConverter(ABC):
    """Reads one on-disk format. Subclasses implement ``convert``."""

    @abstractmethod
    def convert(self, locate: FileLocator) -> ConvertedSAE:
        """Read the SAE's files (found through ``locate``) into SAELens-v6 cfg and tensors."""


class SAELensConverter(SAEConverter):
    """The native format: cfg.json + sae_weights.safetensors (+ sparsity.safetensors)."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        cfg_path = locate(SAE_CFG_FILENAME, True)
        assert cfg_path is not None
        cfg_dict = read_cfg_json(cfg_path)
        weights_path = locate(SAE_WEIGHTS_FILENAME, True)
        assert weights_path is not None
        sparsity_path = locate(SPARSITY_FILENAME, False)
        return ConvertedSAE(
            cfg_dict=cfg_dict,
            state_dict=read_safetensors(weights_path),
            sparsity=read_sparsity_file(sparsity_path, cfg_dict.get("d_sae")) if sparsity_path is not None else None,
            cfg_source=str(cfg_path),
            weights_source=str(weights_path),
        )


def folder_locator(folder: Path) -> FileLocator:
    """Locate files in a local SAE folder."""

    def locate(filename: str, required: bool) -> Path | None:
        path = folder / filename
        if path.is_file():
            return path
        if required:
            raise SAEFileError(f"{path}: no such file")
        return None

    return locate
