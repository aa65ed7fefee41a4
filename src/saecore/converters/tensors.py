"""Checks every converter makes on the tensors it read, with errors that name the file."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from saecore.dtypes import canonical_dtype_name
from saecore.errors import ConfigError, SAEFileError


def require_tensors(found: Mapping[str, Any], names: Iterable[str], source: object, fmt: str) -> None:
    """Raise naming the file, the missing tensors and what it holds, if any of ``names`` is absent."""
    missing = [name for name in names if name not in found]
    if missing:
        raise SAEFileError(f"{source}: missing tensor(s) {missing} of the {fmt} format (found {sorted(found)})")


def dtype_name_of(tensor: torch.Tensor, source: object) -> str:
    """The cfg ``dtype`` of weights stored as ``tensor.dtype``, so a load keeps the published precision."""
    try:
        return canonical_dtype_name(tensor.dtype)
    except ConfigError:
        raise SAEFileError(f"{source}: weights of dtype {tensor.dtype} are not supported; "
                           "allowed: float32, float64, float16, bfloat16") from None


def from_linear_layers(state: Mapping[str, torch.Tensor], encoder: str, decoder: str) -> dict[str, torch.Tensor]:
    """SAELens tensors of an ``nn.Linear`` encoder and decoder, whose weights are stored ``[out, in]``."""
    return {
        "W_enc": state[f"{encoder}.weight"].T.contiguous(),
        "b_enc": state[f"{encoder}.bias"],
        "W_dec": state[f"{decoder}.weight"].T.contiguous(),
        "b_dec": state[f"{decoder}.bias"],
    }


def linear_layer_names(encoder: str, decoder: str) -> tuple[str, ...]:
    """The tensors ``from_linear_layers`` reads."""
    return (f"{encoder}.weight", f"{encoder}.bias", f"{decoder}.weight", f"{decoder}.bias")


def converted_cfg(architecture: str, state_dict: Mapping[str, torch.Tensor], source: object, *,
                  apply_b_dec_to_input: bool, metadata: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A SAELens-v6 cfg dict whose sizes and dtype come from ``W_enc`` itself, so a file cannot contradict them."""
    d_in, d_sae = state_dict["W_enc"].shape
    return {
        "architecture": architecture,
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": dtype_name_of(state_dict["W_enc"], source),
        "device": "cpu",
        "apply_b_dec_to_input": apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": metadata,
        **fields,
    }
