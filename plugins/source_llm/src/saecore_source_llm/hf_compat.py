"""Differences between the transformers versions the plugin runs with."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import torch


def dtype_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    """``from_pretrained``'s dtype argument: ``dtype`` from transformers 4.56, ``torch_dtype`` before."""
    major, minor = (int(part) for part in version("transformers").split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}
