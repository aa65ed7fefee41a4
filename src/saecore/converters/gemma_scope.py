"""Google DeepMind's Gemma Scope format: one ``params.npz`` per SAE folder.

The archive holds ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc``, ``b_dec`` and
``threshold [d_sae]`` (some copies spell the matrices ``w_enc``/``w_dec``). The SAE is a
JumpReLU, ``f = ReLU(h)·1[h > θ]`` with ``h = x W_enc + b_enc``, that never subtracts
``b_dec`` from its input: ``apply_b_dec_to_input=False``.

The archive says nothing about the model or hook; the names say it. The repo
(``google/gemma-scope-2b-pt-res``) gives the model and the site (``res``, ``mlp``, ``att``:
``attn.hook_z``, read with the heads flattened), the folder (``layer_12/width_16k/average_l0_82``)
the layer. Embedding SAEs
(in a folder ``embedding``) were trained on embeddings scaled by √d_model, so their encoder is
divided and their decoder multiplied by √d_in to take the model's raw embeddings.
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saecore.converters.tensors import converted_cfg, require_tensors
from saecore.errors import SAEFileError
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter

GEMMA_SCOPE_PARAMS_FILENAME = "params.npz"
_TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")


class GemmaScopeConverter(SAEConverter):
    """Reads a Gemma Scope ``params.npz`` as a ``jumprelu`` SAE."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        params_path = locate(GEMMA_SCOPE_PARAMS_FILENAME, True)
        assert params_path is not None
        state_dict = read_npz(params_path)
        require_tensors(state_dict, _TENSORS, params_path, "Gemma Scope")
        folder = locate.names().split("/")[-3:]
        embedding = "embedding" in folder
        if embedding:
            root_d_in = math.sqrt(state_dict["W_enc"].shape[0])
            state_dict["W_enc"] = state_dict["W_enc"] / root_d_in
            state_dict["W_dec"] = state_dict["W_dec"] * root_d_in
        metadata = _metadata(locate.names(), "/".join(folder), embedding)
        cfg_dict = converted_cfg("jumprelu", state_dict, params_path, apply_b_dec_to_input=False, metadata=metadata)
        if str(metadata.get("hook_name", "")).endswith("hook_z"):
            cfg_dict["reshape_activations"] = "hook_z"
        return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                            cfg_source=str(params_path), weights_source=str(params_path))


def read_npz(path: Path) -> dict[str, torch.Tensor]:
    """Arrays of the archive as tensors, ``w_*`` renamed ``W_*``; never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise SAEFileError(f"{path}: not a readable .npz archive ({error})") from None
    tensors = {}
    for name, array in arrays.items():
        key = "W_" + name[2:] if name.startswith("w_") else name
        tensors[key] = torch.from_numpy(np.ascontiguousarray(array))
    return tensors


def _metadata(names: str, folder: str, embedding: bool) -> dict[str, Any]:
    """Model, hook and training data as the repo name and the SAE's folder (``layer_N/width_W/average_l0_L``)
    give them; left out where they do not."""
    metadata: dict[str, Any] = {"prepend_bos": True, "dataset_path": "monology/pile-uncopyrighted",
                                "context_size": 1024}
    model = re.search(r"gemma-scope-(\d+b)-(pt|it)", names)
    if model is not None:
        metadata["model_name"] = f"gemma-2-{model.group(1)}" + ("-it" if model.group(2) == "it" else "")
    site = re.search(r"gemma-scope-\d+b-(?:pt|it)-(res|mlp|att)\b", names)
    layer = re.search(r"layer_(\d+)", folder)
    if site is not None and embedding:
        metadata["hook_name"] = "hook_embed"
    elif site is not None and layer is not None:
        hook = {"res": "hook_resid_post", "mlp": "hook_mlp_out", "att": "attn.hook_z"}[site.group(1)]
        metadata["hook_name"] = f"blocks.{layer.group(1)}.{hook}"
    return metadata
