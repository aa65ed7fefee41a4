"""SAELens-style loader callables: what ``SAE.from_pretrained(..., converter=...)`` and
``SAE.load_from_disk(..., converter=...)`` accept besides a registered converter's name.

SAELens 6 passes loading functions around as values. A Hub loader is called with
``(repo_id, folder_name, device, force_download, cfg_overrides)`` and returns
``(cfg_dict, state_dict, log_sparsity or None)``; a disk loader is called with
``(path, device, cfg_overrides)`` and returns ``(cfg_dict, state_dict)``. User code that
wrote its own loader for SAELens passes it to saecore unchanged. SAELens's own loader
functions are here by name, each reading through the registered converter of its format
(SAELens's ``gemma_2`` format is saecore's ``gemma_scope`` converter), so a format a
plugin adds gets loaders with :func:`huggingface_loader` and :func:`disk_loader`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from saecore.dtypes import dtype_from_name
from saecore.io.converters import ConvertedSAE, folder_locator
from saecore.io.hub import hub_locator
from saecore.registry import get_registry


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


def huggingface_loader(converter: str, name: str) -> PretrainedSaeHuggingfaceLoader:
    """A SAELens-style Hub loader, called ``name``, that reads through the registered converter ``converter``."""

    def load(
        repo_id: str,
        folder_name: str,
        device: str = "cpu",
        force_download: bool = False,
        cfg_overrides: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor], torch.Tensor | None]:
        locate = hub_locator(repo_id, folder_name, force_download=force_download, revision=None)
        converted = get_registry().converter(converter).convert(locate)
        cfg_dict, state_dict = _loaded(converted, device, cfg_overrides)
        return cfg_dict, state_dict, converted.sparsity.to(device) if converted.sparsity is not None else None

    load.__name__ = load.__qualname__ = name
    load.__doc__ = f"Read an SAE of a Hub repo folder in the {converter!r} format (SAELens's {name})."
    return load


def disk_loader(converter: str, name: str) -> PretrainedSaeDiskLoader:
    """A SAELens-style disk loader, called ``name``, that reads through the registered converter ``converter``."""

    def load(
        path: str | Path,
        device: str = "cpu",
        cfg_overrides: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return _loaded(get_registry().converter(converter).convert(folder_locator(Path(path))), device, cfg_overrides)

    load.__name__ = load.__qualname__ = name
    load.__doc__ = f"Read an SAE folder on disk in the {converter!r} format (SAELens's {name})."
    return load


# SAELens's loader functions, by SAELens's names, over the converters of the same formats.
sae_lens_huggingface_loader = huggingface_loader("sae_lens", "sae_lens_huggingface_loader")
sae_lens_disk_loader = disk_loader("sae_lens", "sae_lens_disk_loader")
sparsify_huggingface_loader = huggingface_loader("sparsify", "sparsify_huggingface_loader")
sparsify_disk_loader = disk_loader("sparsify", "sparsify_disk_loader")
gemma_2_sae_huggingface_loader = huggingface_loader("gemma_scope", "gemma_2_sae_huggingface_loader")
gemma_3_sae_huggingface_loader = huggingface_loader("gemma_3", "gemma_3_sae_huggingface_loader")
llama_scope_sae_huggingface_loader = huggingface_loader("llama_scope", "llama_scope_sae_huggingface_loader")
llama_scope_r1_distill_sae_huggingface_loader = huggingface_loader(
    "llama_scope_r1_distill", "llama_scope_r1_distill_sae_huggingface_loader")
dictionary_learning_sae_huggingface_loader_1 = huggingface_loader(
    "dictionary_learning", "dictionary_learning_sae_huggingface_loader_1")
deepseek_r1_sae_huggingface_loader = huggingface_loader("deepseek_r1", "deepseek_r1_sae_huggingface_loader")
qwen_scope_sae_huggingface_loader = huggingface_loader("qwen_scope", "qwen_scope_sae_huggingface_loader")
connor_rob_hook_z_huggingface_loader = huggingface_loader("connor_rob_hook_z", "connor_rob_hook_z_huggingface_loader")
get_goodfire_huggingface_loader = huggingface_loader("goodfire", "get_goodfire_huggingface_loader")
temporal_sae_huggingface_loader = huggingface_loader("temporal", "temporal_sae_huggingface_loader")
gemma_2_transcoder_huggingface_loader = huggingface_loader(
    "gemma_2_transcoder", "gemma_2_transcoder_huggingface_loader")
mwhanna_transcoder_huggingface_loader = huggingface_loader(
    "mwhanna_transcoder", "mwhanna_transcoder_huggingface_loader")
mntss_clt_layer_huggingface_loader = huggingface_loader(
    "mntss_clt_layer_transcoder", "mntss_clt_layer_huggingface_loader")
