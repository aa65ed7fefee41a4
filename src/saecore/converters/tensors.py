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
