"""Qwen Scope (SAEs of Qwen 3 and 3.5): one ``layer{n}.sae.pt`` per layer, read as ``topk``.

Each file is a pickled state dict: ``W_enc [d_sae, d_in]``, ``W_dec [d_in, d_sae]`` (both
transposed against SAELens's layout), ``b_enc`` and ``b_dec``. The SAE is
``TopK_k(x W_encᵀ + b_enc)`` without input centring, decoded with ``W_dec`` and ``b_dec``.
Only the repo's name says ``k`` and the model: ``Qwen/SAE-Res-{model}-W{width}K-L0_{k}``;
the file's name says the layer, read at the residual stream after that block.
"""

from __future__ import annotations

import re
from typing import Any

from saecore.converters.pickled_state import load_pickled_state_dict
from saecore.converters.tensors import converted_cfg, require_tensors
from saecore.errors import SAEFileError
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter

_TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec")
_REPO_NAME = re.compile(r"SAE-Res-(.+?)-W(\d+)K-L0_(\d+)")
_FILE_NAME = re.compile(r"layer(\d+)\.sae\.pt")


class QwenScopeConverter(SAEConverter):
    """Reads a Qwen Scope ``layer{n}.sae.pt`` as a ``topk`` SAE; ``k`` comes from the repo name."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        weights_path = locate.sae_file()
        repo = _REPO_NAME.search(locate.names())
        if repo is None:
            raise SAEFileError(f"{weights_path}: Qwen Scope files do not record k; it is read from the repo name "
                               "'Qwen/SAE-Res-{model}-W{width}K-L0_{k}', which is not in "
                               f"{locate.names()!r} (load from the Hub repo, or a folder named after it)")
        raw = load_pickled_state_dict(weights_path)
        require_tensors(raw, _TENSORS, weights_path, "Qwen Scope")
        state_dict = {"W_enc": raw["W_enc"].T.contiguous(), "W_dec": raw["W_dec"].T.contiguous(),
                      "b_enc": raw["b_enc"], "b_dec": raw["b_dec"]}
        metadata: dict[str, Any] = {"model_name": f"Qwen/{repo.group(1)}", "prepend_bos": True,
                                    "context_size": 1024}
        layer = _FILE_NAME.search(locate.sae_path)
        if layer is not None:
            metadata["hook_name"] = f"blocks.{layer.group(1)}.hook_resid_post"
            metadata["hf_hook_name"] = f"model.layers.{layer.group(1)}"
        cfg_dict = converted_cfg("topk", state_dict, weights_path, apply_b_dec_to_input=False, metadata=metadata,
                                 k=int(repo.group(3)), rescale_acts_by_decoder_norm=False)
        return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                            cfg_source=str(weights_path), weights_source=str(weights_path))
