"""SAELens's activation cache layout written from an ``llm`` source: a Hugging Face dataset of prompts.

The folder is what ``datasets.Dataset.save_to_disk`` writes: one row per prompt, the hook's
activations ``[context_size, d_in]`` in an ``Array2D`` column named after the hook and the
prompt's ``token_ids`` beside them. Prompts come from the source's token stream, unshuffled,
so the rows are prompts in dataset order. ``CacheActivationsRunner`` and
``saecore cache --format saelens`` both write through :func:`write_hf_activation_dataset`.

Each buffer of forward passes is saved as a dataset of its own under ``.tmp_shards``; the
buffers are then joined into the final folder, so memory holds one buffer at a time.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from saecore.dtypes import dtype_from_name
from saecore.errors import ConfigError

if TYPE_CHECKING:
    from saecore_source_llm.source import LLMSource

TMP_SHARDS = ".tmp_shards"


def write_hf_activation_dataset(source: LLMSource, folder: Path, *, n_buffers: int, n_batches_in_buffer: int,
                                model_batch_size: int, dtype: str) -> None:
    """Write ``n_buffers × n_batches_in_buffer`` forward passes of ``model_batch_size`` prompts to ``folder``."""
    import datasets

    if source.cfg.additional_hook_names:
        raise ConfigError(f"additional_hook_names={source.cfg.additional_hook_names}: SAELens's cache layout holds "
                          "one hook; cache each hook on its own or use saecore's layout")
    if source.cfg.hook_name_out is not None:
        raise ConfigError(f"hook_name_out={source.cfg.hook_name_out!r}: SAELens's cache layout holds inputs only, not "
                          "(input, target) pairs; cache the pairs in saecore's layout (the default --format saecore)")
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise ConfigError(f"{str(folder)!r} is not empty; delete it or choose another folder")
    features = activation_features(source.cfg.hook_name, source.cfg.training_context_size, source.d_in, dtype)
    shards = folder / TMP_SHARDS
    try:
        for index in range(n_buffers):
            columns = _buffer_columns(source, n_batches_in_buffer, model_batch_size, dtype)
            datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(shards / f"shard_{index:05d}"))
        joined = datasets.concatenate_datasets([datasets.load_from_disk(str(shard))
                                                for shard in sorted(shards.iterdir())])
        joined.save_to_disk(str(folder))
    finally:
        shutil.rmtree(shards, ignore_errors=True)


@torch.no_grad()
def _buffer_columns(source: LLMSource, n_batches_in_buffer: int, model_batch_size: int,
                    dtype: str) -> dict[str, torch.Tensor]:
    """``n_batches_in_buffer`` forward passes as the dataset's columns."""
    cfg = source.cfg
    activations, token_ids = [], []
    for _ in range(n_batches_in_buffer):
        prompts = source.stream.next_prompts(model_batch_size)
        activations.append(source.activations(prompts).to("cpu", dtype_from_name(dtype)))
        token_ids.append(prompts[:, slice(*cfg.seqpos_slice)].to("cpu", torch.int32))
    return {cfg.hook_name: torch.cat(activations).reshape(-1, cfg.training_context_size, source.d_in),
            "token_ids": torch.cat(token_ids)}


def activation_features(hook_name: str, context_size: int, d_in: int, dtype: str) -> Any:
    """The dataset's ``datasets.Features``: SAELens's column types."""
    import datasets

    return datasets.Features({
        hook_name: datasets.Array2D(shape=(context_size, d_in), dtype=dtype),
        "token_ids": datasets.Sequence(datasets.Value("int32"), length=context_size),
    })
