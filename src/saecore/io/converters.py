"""Converters: readers of published SAE formats, resolved by name.

A converter turns the files of one format into the SAELens-v6 shape the loader builds
from: a cfg dict and a state dict with SAELens tensor names. It asks for files through
a locator, so the same converter reads a local folder or a Hub repo (downloaded through
huggingface_hub, cached, offline-capable).
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saecore.errors import SAEFileError
from saecore.io.format import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME
from saecore.io.sae_files import read_cfg_json, read_safetensors, read_sparsity_file


class FileLocator(ABC):
    """Finds the files of one SAE, in a local folder or a Hub repo.

    ``sae_path`` is where the SAE lives under ``root``: a folder for most formats, one
    file for formats that publish a file per SAE. ``root`` is the Hub repo id or a local
    folder; converters of formats whose files leave facts out (the layer, the model, k)
    read them from these names, as the publishers spelled them.
    """

    def __init__(self, root: str, sae_path: str, repo_id: str | None) -> None:
        self.root = root
        self.sae_path = sae_path.strip("/")
        self.repo_id = repo_id

    def __call__(self, filename: str, required: bool) -> Path | None:
        """The local path of ``filename`` inside the SAE's folder, or None if optional and absent."""
        return self.find(posixpath.join(self.sae_path, filename) if self.sae_path else filename, required)

    def sae_file(self) -> Path:
        """The local path of the SAE itself, for formats that publish one file per SAE."""
        path = self.find(self.sae_path, True)
        assert path is not None
        return path

    def beside(self, filename: str, required: bool) -> Path | None:
        """A file in the folder that holds the SAE's path (a one-file SAE's companion file)."""
        return self.find(posixpath.join(posixpath.dirname(self.sae_path), filename), required)

    def names(self) -> str:
        """``root/sae_path``: the repo and path names a converter may read facts from."""
        return f"{self.root}/{self.sae_path}"

    @abstractmethod
    def find(self, path: str, required: bool) -> Path | None:
        """The local path of ``path`` (relative to ``root``), or None if optional and absent."""


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


class FolderLocator(FileLocator):
    """Files of an SAE on local disk: ``sae_path`` is a folder, or one file, in the folder ``root``."""

    def find(self, path: str, required: bool) -> Path | None:
        local = Path(self.root) / path
        if local.is_file():
            return local
        if required:
            raise SAEFileError(f"{local}: no such file")
        return None


def folder_locator(path: Path) -> FileLocator:
    """Locate the files of the local SAE at ``path`` (its folder, or its one file)."""
    return FolderLocator(str(path.parent), path.name, repo_id=None)
