"""Names of the torch dtypes a config may ask for, in both directions.

cfg.json stores dtypes as strings ("float32"); SAELens also wrote "torch.float32".
Both are accepted on read; the short form is always written.
"""

from __future__ import annotations

import torch

from saecore.errors import ConfigError

DTYPES_BY_NAME: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "fp32": "float32",
            "fp16": "float16", "bf16": "bfloat16", "fp64": "float64"}


def canonical_dtype_name(name: str | torch.dtype, field: str = "dtype") -> str:
    """Return the short name of a dtype given as a string or a torch.dtype."""
    if isinstance(name, torch.dtype):
        for short, dtype in DTYPES_BY_NAME.items():
            if dtype == name:
                return short
        raise ConfigError(f"{field}: unsupported dtype {name}; allowed: {', '.join(DTYPES_BY_NAME)}")
    short = str(name).removeprefix("torch.")
    short = _ALIASES.get(short, short)
    if short not in DTYPES_BY_NAME:
        raise ConfigError(f"{field}: unknown dtype {name!r}; allowed: {', '.join(DTYPES_BY_NAME)}")
    return short


def dtype_from_name(name: str | torch.dtype) -> torch.dtype:
    return DTYPES_BY_NAME[canonical_dtype_name(name)]
