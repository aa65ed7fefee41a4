"""SAELens's ``sae_lens.util`` helpers, under the same module path.

User code and notebooks written for SAELens call these directly (dtype names, the layer
of a TransformerLens hook name, seeding a block of code), so they keep SAELens's
signatures and errors; saecore's own code reads dtypes through ``saecore.dtypes``.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from saecore.dtypes import DTYPES_BY_NAME

V = TypeVar("V")

_LAYER_SEGMENT = re.compile(r"\.(\d+)(?:\.|$)")
_STRUCTURAL_SPECIAL_TOKENS = ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id")


def filter_valid_dataclass_fields(
    source: Mapping[str, V] | object,
    destination: object | type,
    whitelist_fields: Sequence[str] | None = None,
) -> dict[str, V]:
    """The entries of ``source`` (a dict or a dataclass instance) that name a field of the dataclass ``destination``.

    ``whitelist_fields`` are kept too, so a caller can pass extra keyword arguments through.
    """
    if not dataclasses.is_dataclass(destination):
        raise ValueError(f"destination {destination!r} is not a dataclass or dataclass instance")
    if dataclasses.is_dataclass(source) and not isinstance(source, type):
        entries: Mapping[str, Any] = dataclasses.asdict(source)
    elif isinstance(source, Mapping):
        entries = source
    else:
        raise ValueError(f"source {source!r} is neither a dict nor a dataclass instance")
    allowed = {field.name for field in dataclasses.fields(destination)} | set(whitelist_fields or ())
    return {key: value for key, value in entries.items() if key in allowed}


def extract_layer_from_tlens_hook_name(hook_name: str) -> int | None:
    """The layer index of a hook name: its first ``.<int>`` segment (``blocks.3.hook_resid_pre``, ``model.layers.3``).

    None when the name has no such segment (``hook_embed``).
    """
    match = _LAYER_SEGMENT.search(hook_name)
    return None if match is None else int(match.group(1))


def extract_stop_at_layer_from_tlens_hook_name(hook_name: str) -> int | None:
    """The ``stop_at_layer`` that still runs the hook's layer: its index plus one (None without a layer)."""
    layer = extract_layer_from_tlens_hook_name(hook_name)
    return None if layer is None else layer + 1


@contextmanager
def temporary_seed(seed: int | None) -> Iterator[None]:
    """Seed torch's global generators inside the block only; the state outside it is restored (None: no effect)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


@contextmanager
def path_or_tmp_dir(path: str | Path | None) -> Iterator[Path]:
    """``Path(path)``, or a temporary folder removed at the end of the block when ``path`` is None."""
    if path is not None:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def get_special_token_ids(tokenizer: Any) -> list[int]:
    """The ids of the tokenizer's BOS, EOS, PAD, SEP and decoder-start tokens, each once.

    Chat-template tokens (additional special tokens) are left out, so activations at them are kept.
    """
    ids = {getattr(tokenizer, attribute, None) for attribute in _STRUCTURAL_SPECIAL_TOKENS}
    return [token_id for token_id in ids if token_id is not None]


def str_to_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """The torch dtype named ``dtype`` (``"float32"`` or ``"torch.float32"``); a torch.dtype is returned as is."""
    if isinstance(dtype, torch.dtype):
        return dtype
    short = dtype.removeprefix("torch.")
    if short not in DTYPES_BY_NAME:
        allowed = [*DTYPES_BY_NAME, *(f"torch.{name}" for name in DTYPES_BY_NAME)]
        raise ValueError(f"Invalid dtype: {dtype!r}. Must be one of {allowed}")
    return DTYPES_BY_NAME[short]


def dtype_to_str(dtype: torch.dtype) -> str:
    """The short name of ``dtype`` (``torch.float32`` -> ``"float32"``), as cfg.json stores it."""
    for name, candidate in DTYPES_BY_NAME.items():
        if candidate == dtype:
            return name
    raise ValueError(f"Invalid dtype: {dtype}. Must be one of {list(DTYPES_BY_NAME.values())}")


def cosine_similarities(mat1: torch.Tensor, mat2: torch.Tensor | None = None) -> torch.Tensor:
    """``[n1, n2]`` cosine similarities between the rows of ``mat1`` and of ``mat2`` (default ``mat1``).

    Norms are clamped at 1e-8, so a zero row has similarity 0 with everything instead of NaN.
    """
    other = mat1 if mat2 is None else mat2
    return _unit_rows(mat1) @ _unit_rows(other).T


def _unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    return matrix / matrix.norm(dim=1, keepdim=True).clamp(min=1e-8)
