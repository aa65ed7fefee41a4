"""Build, on local disk, the exact folder tree a push uploads.

The tree is the whole upload: one folder per SAE holding ``cfg.json``,
``sae_weights.safetensors`` and ``sparsity.safetensors`` when there is one, and a
``README.md`` model card at the root. Building it first means a dry run shows precisely
what would be published, and the upload itself is a single folder upload.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from saecore.errors import ConfigError, SAEFileError
from saecore.io.format import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME
from saecore.io.sae_files import normalize_cfg_dict, read_cfg_json
from saecore.publishing.model_card import CardEntry, render_model_card
from saecore.sae import SAE

MODEL_CARD_FILENAME = "README.md"
SAESource: TypeAlias = "str | Path | SAE[Any]"
_COPIED_FILES = (SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME)


@dataclass(frozen=True)
class UploadTree:
    root: Path
    sae_ids: list[str]

    def files(self) -> list[str]:
        """Every file of the tree as a repo path (``layer_2/cfg.json``), sorted."""
        return sorted(path.relative_to(self.root).as_posix() for path in self.root.rglob("*") if path.is_file())


def collect_saes(saes: Mapping[str, SAESource] | str | Path) -> dict[str, SAESource]:
    """``{sae_id: source}`` from a mapping, an SAE folder, or a folder of SAE folders."""
    if isinstance(saes, Mapping):
        if not saes:
            raise ConfigError("saes: nothing to push; give at least one {sae_id: folder or SAE}")
        return dict(saes)
    folder = Path(saes).expanduser()
    if (folder / SAE_CFG_FILENAME).is_file():
        return {folder.resolve().name: folder}
    if folder.is_dir():
        found: dict[str, SAESource] = {
            sub.name: sub for sub in sorted(folder.iterdir()) if (sub / SAE_CFG_FILENAME).is_file()
        }
        if found:
            return found
    raise SAEFileError(f"{folder}: no SAE found; expected a folder holding {SAE_CFG_FILENAME} and "
                       f"{SAE_WEIGHTS_FILENAME}, or a folder of such folders")


def build_upload_tree(saes: Mapping[str, SAESource], root: Path, repo_id: str, model_card: bool = True) -> UploadTree:
    """Write every SAE, and the model card unless ``model_card`` is False, under ``root`` (empty or absent)."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"{root}: the upload tree must be built in an empty or new folder")
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for sae_id, source in saes.items():
        folder = root / _checked_sae_id(sae_id)
        _write_sae_folder(source, folder)
        cfg = normalize_cfg_dict(read_cfg_json(folder / SAE_CFG_FILENAME))
        entries.append(CardEntry(sae_id, cfg, has_sparsity=(folder / SPARSITY_FILENAME).is_file()))
    if model_card:
        (root / MODEL_CARD_FILENAME).write_text(render_model_card(repo_id, entries), encoding="utf-8")
    return UploadTree(root=root, sae_ids=list(saes))


def _checked_sae_id(sae_id: Any) -> str:
    """An sae_id becomes a folder of the repo: relative, no ``..``, not the model card's name."""
    parts = sae_id.split("/") if isinstance(sae_id, str) else [""]
    if any(part in ("", ".", "..") for part in parts) or "\\" in sae_id:
        raise ConfigError(f"sae_id {sae_id!r} cannot be a folder of the repo; use a relative name like "
                          "'blocks.8.hook_resid_post' or 'layer_8/width_16k'")
    if parts[0] == MODEL_CARD_FILENAME:
        raise ConfigError(f"sae_id {sae_id!r} clashes with the model card {MODEL_CARD_FILENAME}")
    return sae_id


def _write_sae_folder(source: SAESource, folder: Path) -> None:
    if isinstance(source, SAE):
        source.save_model(folder)
        return
    source_folder = Path(source).expanduser()
    for required in (SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME):
        if not (source_folder / required).is_file():
            raise SAEFileError(f"{source_folder / required}: no such file (an SAE folder to push needs "
                               f"{SAE_CFG_FILENAME} and {SAE_WEIGHTS_FILENAME})")
    folder.mkdir(parents=True, exist_ok=True)
    for name in _COPIED_FILES:
        if (source_folder / name).is_file():
            shutil.copyfile(source_folder / name, folder / name)
