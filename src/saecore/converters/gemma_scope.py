"""Google DeepMind's Gemma Scope format: one ``params.npz`` per SAE folder.

The archive holds ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc``, ``b_dec`` and
``threshold [d_sae]`` (some copies spell the matrices ``w_enc``/``w_dec``). The SAE is a
JumpReLU, ``f = ReLU(h)·1[h > θ]`` with ``h = x W_enc + b_enc``, that never subtracts
``b_dec`` from its input: ``apply_b_dec_to_input=False``. The archive says nothing about
the model or hook; the release directory supplies them.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saecore.converters.tensors import dtype_name_of, require_tensors
from saecore.errors import SAEFileError
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter

GEMMA_SCOPE_PARAMS_FILENAME = "params.npz"
_TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")


class GemmaScopeConverter(SAEConverter):
    """Reads a Gemma Scope ``params.npz`` as a ``jumprelu`` SAE."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        params_path = locate(GEMMA_SCOPE_PARAMS_FILENAME, True)
        assert params_path is not None
        state_dict = _read_npz(params_path)
        require_tensors(state_dict, _TENSORS, params_path, "Gemma Scope")
        d_in, d_sae = state_dict["W_enc"].shape
        cfg_dict: dict[str, Any] = {
            "architecture": "jumprelu",
            "d_in": d_in,
            "d_sae": d_sae,
            "dtype": dtype_name_of(state_dict["W_enc"], params_path),
            "device": "cpu",
            "apply_b_dec_to_input": False,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "metadata": {},
        }
        return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                            cfg_source=str(params_path), weights_source=str(params_path))


def _read_npz(path: Path) -> dict[str, torch.Tensor]:
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
