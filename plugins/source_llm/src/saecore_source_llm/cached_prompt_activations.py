"""A cache of activations read prompt by prompt, in cache order: SAELens's store with ``cached_activations_path``.

SAELens's ``ActivationsStore`` serves a cache ``store_batch_size_prompts`` prompts at a
time from its first row. When fewer prompts than that are left it goes back to the first
row (raising StopIteration first, where the caller asks), so a pass never serves a partial
batch. This reader keeps those rules, so a store on a cache serves the same batches in the
same order as SAELens's store on that cache.

Both cache layouts are read:

* SAELens's (a Hugging Face dataset, as its ``CacheActivationsRunner`` writes): one row
  per prompt, with a ``[context_size, d_in]`` column named after the hook and, usually,
  the prompt's ``token_ids``, which ``exclude_special_tokens`` filters on.
* saecore's (``cache_info.json`` and safetensors shards): rows are tokens, read in order
  ``context_size`` at a time per prompt; it records no token ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saecore.errors import ConfigError
from saecore.sources.cached import CachedSource, CachedSourceConfig
from saecore.sources.hf_dataset_cache import TOKEN_IDS_COLUMN, is_hf_dataset_folder


class CachedPromptActivations:
    """Consecutive prompts' activations (and token ids, where the cache has them) from a cache folder."""

    def __init__(self, path: str | Path, *, hook_name: str, context_size: int, d_in: int, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ConfigError(f"cached_activations_path={str(path)!r} does not exist; write a cache there with "
                              "CacheActivationsRunner or `saecore cache`, or check dataset_path, model_name and "
                              "hook_name (they name the default folder)")
        self.hook_name, self.context_size, self.d_in = hook_name, context_size, d_in
        self.device, self.dtype = device, dtype
        self.current_row_idx = 0
        self.dataset = load_hf_activation_dataset(self.path, hook_name, context_size, d_in, device, dtype) \
            if is_hf_dataset_folder(self.path) else None
        self._rows: CachedSource | None = None
        if self.dataset is not None:
            self.n_prompts = len(self.dataset)
        else:
            rows = self._open_rows()
            self._check_saecore_cache(rows)
            self.n_prompts = rows.n_tokens // context_size

    def next_prompts(self, n_prompts: int, raise_at_epoch_end: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``([n_prompts × context_size, d_in] activations, [n_prompts × context_size] token ids or None)``."""
        if n_prompts > self.n_prompts:
            raise ConfigError(f"store_batch_size_prompts={n_prompts} but the cache at {self.path} holds "
                              f"{self.n_prompts} prompts of {self.context_size} tokens; lower store_batch_size_prompts")
        if self.current_row_idx > self.n_prompts - n_prompts:
            self.current_row_idx = 0
            self._rows = None
            if raise_at_epoch_end:
                raise StopIteration(f"every prompt of the cache at {self.path} was served; the next pass begins")
        start = self.current_row_idx
        self.current_row_idx += n_prompts
        if self.dataset is None:
            activations = self._open_rows().next_batch(n_prompts * self.context_size)
            return activations.to(self.device, self.dtype), None
        rows = self.dataset[start:start + n_prompts]
        activations = rows[self.hook_name].reshape(-1, self.d_in)
        # The dataset's torch format casts every column to the store's dtype; token ids are integers.
        tokens = rows[TOKEN_IDS_COLUMN].reshape(-1).long() if TOKEN_IDS_COLUMN in rows else None
        return activations, tokens

    def _open_rows(self) -> CachedSource:
        if self._rows is None:
            self._rows = CachedSource(CachedSourceConfig(path=self.path, shuffle=False), device=str(self.device))
        return self._rows

    def _check_saecore_cache(self, rows: CachedSource) -> None:
        metadata: dict[str, Any] = rows.info.metadata
        found = {"d_in": rows.d_in, "hook_name": metadata.get("hook_name", self.hook_name),
                 "context_size": metadata.get("context_size", self.context_size)}
        given = {"d_in": self.d_in, "hook_name": self.hook_name, "context_size": self.context_size}
        wrong = [name for name in given if found[name] != given[name]]
        if wrong:
            raise ConfigError(f"the cache at {self.path} has " + ", ".join(f"{name}={found[name]!r}" for name in wrong)
                              + " but the store was given " + ", ".join(f"{name}={given[name]!r}" for name in wrong))


def load_hf_activation_dataset(path: Path, hook_name: str, context_size: int, d_in: int, device: torch.device,
                               dtype: torch.dtype) -> Any:
    """The cache's ``datasets.Dataset``, formatted as torch tensors on ``device``; ConfigError names a mismatch."""
    import datasets

    dataset = datasets.load_from_disk(str(path))
    if hook_name not in dataset.column_names:
        raise ConfigError(f"the cache at {path} has no activations of hook_name={hook_name!r}; its columns are "
                          f"{dataset.column_names}")
    shape = tuple(dataset.features[hook_name].shape)
    if shape != (context_size, d_in):
        raise ConfigError(f"the cache at {path} holds {hook_name} activations of shape {shape} per prompt, but "
                          f"context_size={context_size} and d_in={d_in} were given")
    columns = [hook_name] + [TOKEN_IDS_COLUMN] * (TOKEN_IDS_COLUMN in dataset.column_names)
    dataset.set_format(type="torch", columns=columns, device=device, dtype=dtype)
    return dataset
