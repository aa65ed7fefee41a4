"""Loading SAEs published on the Hugging Face Hub.

Downloads go through ``huggingface_hub.hf_hub_download``, so its cache, offline mode
(``HF_HUB_OFFLINE=1``) and authentication apply unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saecore.errors import SAEFileError
from saecore.io.format import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME
from saecore.io.sae_files import build_sae, read_cfg_json, read_safetensors, read_sparsity
from saecore.releases import resolve_release


def _download(repo_id: str, folder: str, filename: str, *, force_download: bool, revision: str | None,
              required: bool) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    path_in_repo = f"{folder.strip('/')}/{filename}" if folder.strip("/") else filename
    try:
        return Path(hf_hub_download(repo_id, path_in_repo, revision=revision, force_download=force_download))
    except (EntryNotFoundError, LocalEntryNotFoundError) as error:
        if required:
            raise SAEFileError(f"{repo_id}/{path_in_repo}: could not be found or downloaded ({error})") from None
        return None


def load_pretrained(
    release: str,
    sae_id: str,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    force_download: bool = False,
    fold_W_dec_norm: bool = False,
    revision: str | None = None,
) -> tuple[Any, dict[str, Any], torch.Tensor | None]:
    """Resolve ``release``/``sae_id`` and load the SAE with its cfg dict and log sparsity."""
    target = resolve_release(release, sae_id)
    if target.conversion not in ("sae_lens", "saecore"):
        raise SAEFileError(
            f"release {release!r} uses the {target.conversion!r} format, which no installed converter reads"
        )
    common = {"force_download": force_download, "revision": revision or target.revision}
    cfg_path = _download(target.repo_id, target.folder, SAE_CFG_FILENAME, required=True, **common)
    weights_path = _download(target.repo_id, target.folder, SAE_WEIGHTS_FILENAME, required=True, **common)
    sparsity_path = _download(target.repo_id, target.folder, SPARSITY_FILENAME, required=False, **common)
    assert cfg_path is not None and weights_path is not None
    cfg_dict = {**read_cfg_json(cfg_path), **target.config_overrides}
    sae = build_sae(
        cfg_dict,
        read_safetensors(weights_path),
        device=device,
        dtype=dtype,
        cfg_source=f"{target.repo_id}/{target.folder}/{SAE_CFG_FILENAME}",
        weights_source=f"{target.repo_id}/{target.folder}/{SAE_WEIGHTS_FILENAME}",
    )
    if sae.cfg.normalize_activations == "expected_average_only_in" and target.norm_scaling_factor is not None:
        sae.fold_activation_norm_scaling_factor(target.norm_scaling_factor)
    if fold_W_dec_norm:
        sae.fold_W_dec_norm()
    sparsity = read_sparsity(sparsity_path.parent) if sparsity_path is not None else None
    return sae, sae.cfg.to_dict(), sparsity
