"""Activation caches in SAELens's layout: a Hugging Face dataset saved with ``save_to_disk``.

SAELens's ``CacheActivationsRunner`` writes, and its ``ActivationsStore`` reads, a folder::

    dataset_info.json    features: {"<hook_name>": {"_type": "Array2D", "shape": [context_size, d_in],
                                                    "dtype": "float32"},
                                    "token_ids": {"_type": "List", "length": context_size, ...}}
    state.json           "_data_files": [{"filename": "data-00000-of-00002.arrow"}, ...]
    data-00000-of-00002.arrow, ...   Arrow IPC streams, one row per prompt

Each row holds one prompt's activations ``[context_size, d_in]``; rows are prompts in the
order they were cached. This module reads that layout without the ``datasets`` package
(the core never imports it), with ``pyarrow``, which ``datasets`` installs. Each Arrow file
is one shard of ``rows × context_size`` activations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saecore.dtypes import canonical_dtype_name
from saecore.errors import SAEFileError

DATASET_INFO_FILE = "dataset_info.json"
STATE_FILE = "state.json"
TOKEN_IDS_COLUMN = "token_ids"


@dataclass(frozen=True)
class HFDatasetCache:
    """What ``dataset_info.json`` and ``state.json`` say about a cache folder in SAELens's layout."""

    column: str
    context_size: int
    d_in: int
    dtype: str
    files: tuple[str, ...]


def is_hf_dataset_folder(path: Path) -> bool:
    """Whether ``path`` holds a dataset saved by ``datasets.Dataset.save_to_disk``."""
    return (path / DATASET_INFO_FILE).is_file() and (path / STATE_FILE).is_file()


def read_hf_dataset_cache(path: Path) -> HFDatasetCache:
    """Parse the folder's JSON files; SAEFileError names the file and what it lacks."""
    info_path, state_path = path / DATASET_INFO_FILE, path / STATE_FILE
    try:
        features: dict[str, Any] = json.loads(info_path.read_text())["features"]
        files = tuple(str(entry["filename"]) for entry in json.loads(state_path.read_text())["_data_files"])
    except (ValueError, KeyError, TypeError) as error:
        raise SAEFileError(f"{path}: not a readable Hugging Face dataset folder ({type(error).__name__}: {error} "
                           f"in {DATASET_INFO_FILE} or {STATE_FILE})") from None
    arrays = {name: feature for name, feature in features.items()
              if isinstance(feature, dict) and feature.get("_type") == "Array2D"}
    if len(arrays) != 1:
        raise SAEFileError(f"{info_path}: an activation cache has exactly one Array2D column (the hook's "
                           f"activations); found {sorted(arrays) or 'none'} among {sorted(features)}")
    [(column, feature)] = arrays.items()
    context_size, d_in = (int(size) for size in feature["shape"])
    if not files:
        raise SAEFileError(f"{state_path}: lists no data files")
    return HFDatasetCache(column, context_size, d_in, canonical_dtype_name(feature.get("dtype", "float32")), files)


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
    except ImportError:
        raise SAEFileError("reading an activation cache saved as a Hugging Face dataset needs pyarrow: "
                           "pip install pyarrow (it comes with the datasets package)") from None
    return pyarrow


def count_hf_rows(file: Path) -> int:
    """Rows (prompts) in one Arrow file, read from its record batch headers."""
    pa = _pyarrow()
    try:
        with pa.memory_map(str(file)) as source:
            return sum(batch.num_rows for batch in pa.ipc.open_stream(source))
    except (OSError, pa.ArrowInvalid) as error:
        raise SAEFileError(f"{file}: not a readable Arrow stream ({type(error).__name__}: {error})") from None


def read_hf_activations(file: Path, cache: HFDatasetCache) -> torch.Tensor:
    """One Arrow file's activations as rows ``[prompts × context_size, d_in]``, in the cache's dtype."""
    pa = _pyarrow()
    try:
        with pa.memory_map(str(file)) as source:
            table = pa.ipc.open_stream(source).read_all()
    except (OSError, pa.ArrowInvalid) as error:
        raise SAEFileError(f"{file}: not a readable Arrow stream ({type(error).__name__}: {error})") from None
    if cache.column not in table.column_names:
        raise SAEFileError(f"{file}: has no column {cache.column!r}; its columns are {table.column_names}")
    chunks = []
    for chunk in table.column(cache.column).chunks:
        storage = chunk.storage if isinstance(chunk.type, pa.ExtensionType) else chunk
        chunks.append(torch.from_numpy(storage.flatten().flatten().to_numpy(zero_copy_only=False).copy()))
    values = torch.cat(chunks) if chunks else torch.empty(0)
    if values.numel() != table.num_rows * cache.context_size * cache.d_in:
        raise SAEFileError(f"{file}: {values.numel()} activation values for {table.num_rows} prompts; "
                           f"{DATASET_INFO_FILE} promises [{cache.context_size}, {cache.d_in}] per prompt")
    return values.reshape(-1, cache.d_in)
