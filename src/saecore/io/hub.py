"""Loading SAEs published on the Hugging Face Hub.

Downloads go through ``huggingface_hub.hf_hub_download``, so its cache, offline mode
(``HF_HUB_OFFLINE=1``) and authentication apply unchanged. The release's converter
decides which files are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saecore.errors import SAEFileError
from saecore.io.converters import FileLocator
from saecore.io.sae_files import build_sae
from saecore.releases import resolve_release


def hub_locator(repo_id: str, folder: str, *, force_download: bool, revision: str | None) -> FileLocator:
    """Locate (download or find in the cache) files of one SAE folder of a Hub repo."""

    def locate(filename: str, required: bool) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        path_in_repo = f"{folder.strip('/')}/{filename}" if folder.strip("/") else filename
        try:
            return Path(hf_hub_download(repo_id, path_in_repo, revision=revision, force_download=force_download))
        except (EntryNotFoundError, LocalEntryNotFoundError) as error:
            if required:
                raise SAEFileError(f"{repo_id}/{path_in_repo}: could not be found or downloaded ({error})") from None
            return None

    return locate


def load_pretrained(
    release: str,
    sae_id: str,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    force_download: bool = False,
    fold_W_dec_norm: bool = False,
    revision: str | None = None,
    converter: str | None = None,
) -> tuple[Any, dict[str, Any], torch.Tensor | None]:
    """Resolve ``release``/``sae_id`` and load the SAE with its cfg dict and log sparsity."""
    from saecore.registry import get_registry

    target = resolve_release(release, sae_id)
    reader = get_registry().converter(converter or target.conversion)
    locate = hub_locator(target.repo_id, target.folder, force_download=force_download,
                         revision=revision or target.revision)
    converted = reader.convert(locate)
    sae = build_sae(
        {**converted.cfg_dict, **target.config_overrides},
        converted.state_dict,
        device=device,
        dtype=dtype,
        cfg_source=converted.cfg_source,
        weights_source=converted.weights_source,
    )
    if sae.cfg.normalize_activations == "expected_average_only_in" and target.norm_scaling_factor is not None:
        sae.fold_activation_norm_scaling_factor(target.norm_scaling_factor)
    if fold_W_dec_norm:
        sae.fold_W_dec_norm()
    return sae, sae.cfg.to_dict(), converted.sparsity
