"""SAELens's ``CacheActivationsRunner``: a language model's activations cached as a Hugging Face dataset.

The cache is the folder SAELens writes and reads (``datasets.Dataset.save_to_disk``): one
row per prompt, the hook's activations ``[context_size, d_in]`` in an ``Array2D`` column
named after the hook and the prompt's ``token_ids`` beside them. SAELens's
``ActivationsStore(cached_activations_path=...)`` trains on it, and so does saecore's
``cached`` source. The writer is :mod:`saecore_source_llm.hf_activation_dataset`'s.

The amount cached is SAELens's: ``n_buffers`` buffers of ``n_batches_in_buffer`` forward
passes, sized by ``buffer_size_gb``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from saecore.dtypes import dtype_from_name
from saecore.errors import ConfigError
from saecore_source_llm.config import LLMSourceConfig, ModelClassName, reject_unknown_fields
from saecore_source_llm.dataset_reader import choose_column, iter_column, open_dataset
from saecore_source_llm.hf_activation_dataset import activation_features, write_hf_activation_dataset
from saecore_source_llm.source import LLMSource

# Fields SAELens acts on that this runner does not, with what to do instead.
_NO_EFFECT: dict[str, tuple[Any, str]] = {
    "model_kwargs": ({}, "the model is run with its default forward arguments"),
    "compile_llm": (False, "the model is not compiled while caching"),
    "llm_compilation_mode": (None, "the model is not compiled while caching"),
    "dataset_trust_remote_code": (None, "datasets are opened without remote code"),
    "use_chat_formatting": (False, "documents are tokenized as plain text"),
    "hf_repo_id": (None, "the cache is written to new_cached_activations_path only; upload it with "
                         "datasets.load_from_disk(path).push_to_hub(repo_id)"),
    "hf_num_shards": (None, "nothing is pushed to the Hub"),
    "hf_revision": ("main", "nothing is pushed to the Hub"),
    "hf_is_private_repo": (False, "nothing is pushed to the Hub"),
}


def default_cached_activations_path(dataset_path: str, model_name: str, hook_name: str) -> str:
    """``activations/<dataset>/<model>/<hook>``, the folder SAELens picks when none is given."""
    return f"activations/{dataset_path.replace('/', '_')}/{model_name.replace('/', '_')}/{hook_name}"


class CacheActivationsRunnerConfig(BaseModel):
    """SAELens's ``CacheActivationsRunnerConfig``: every field it has, with its defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)

    dataset_path: str = Field(description="Hugging Face dataset name, local files or folder (text or tokens).")
    model_name: str = Field(description="An official TransformerLens/Hugging Face name or a local model folder.")
    model_batch_size: int = Field(gt=0, description="Prompts per forward pass of the model.")
    hook_name: str = Field(description="The hook whose activations are cached.")
    d_in: int = Field(gt=0, description="Width of the hook's activations.")
    training_tokens: int = Field(gt=0, description="Activations to cache (rounded up to whole buffers).")
    context_size: int = Field(default=-1, description="Tokens per prompt; -1 reads it from a tokenized dataset.")
    model_class_name: ModelClassName = Field(default="HookedTransformer", description="How to run the model.")
    new_cached_activations_path: str | None = Field(default=None, description="Folder the cache is written to.")
    shuffle: bool = Field(default=True, description="Return the written dataset shuffled (the files keep order).")
    seed: int = Field(default=42, description="Seed of the shuffle of the returned dataset.")
    dtype: str = Field(default="float32", description="Storage dtype of the activations.")
    device: str = Field(default="cuda" if torch.cuda.is_available() else "cpu", description="Device of the model.")
    buffer_size_gb: float = Field(default=2.0, gt=0, description="Size of one buffer, saved as one dataset.")
    hf_repo_id: str | None = None
    hf_num_shards: int | None = None
    hf_revision: str = "main"
    hf_is_private_repo: bool = False
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    model_from_pretrained_kwargs: dict[str, Any] = Field(default_factory=dict)
    compile_llm: bool = False
    llm_compilation_mode: str | None = None
    prepend_bos: bool = Field(default=True, description="Start every prompt with the BOS token.")
    seqpos_slice: tuple[int | None, ...] = Field(default=(None,), description="Positions kept of each prompt.")
    streaming: bool = Field(default=True, description="Stream the dataset.")
    autocast_lm: bool = Field(default=False, description="Run the model under bfloat16 autocast.")
    dataset_trust_remote_code: bool | None = None
    use_chat_formatting: bool = False

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, values: Any) -> Any:
        return reject_unknown_fields(values, cls.model_fields)

    @model_validator(mode="after")
    def _resolve(self) -> CacheActivationsRunnerConfig:
        if self.use_chat_formatting and self.context_size == -1:
            raise ValueError("context_size must be set explicitly when use_chat_formatting is True")
        if self.context_size == -1:
            object.__setattr__(self, "context_size", _tokenized_context_size(self.dataset_path))
        if self.context_size < 1:
            raise ValueError(f"context_size={self.context_size}: must be at least 1 (or -1 for a tokenized dataset)")
        if self.sliced_context_size == 0:
            raise ValueError(f"seqpos_slice={self.seqpos_slice} keeps no position of a "
                             f"context_size={self.context_size} prompt")
        if self.context_size > self.training_tokens:
            raise ValueError(f"context_size ({self.context_size}) is greater than training_tokens "
                             f"({self.training_tokens}); lower context_size or raise training_tokens")
        dtype_from_name(self.dtype)
        if self.n_batches_in_buffer < 1:
            raise ValueError(f"buffer_size_gb={self.buffer_size_gb} holds less than one forward pass of "
                             f"{self.n_tokens_in_batch} activations × {self.bytes_per_token} bytes")
        if self.new_cached_activations_path is None:
            path = default_cached_activations_path(self.dataset_path, self.model_name, self.hook_name)
            object.__setattr__(self, "new_cached_activations_path", path)
        return self

    def warn_fields_without_effect(self) -> None:
        """One line per SAELens field set to something this runner does not act on."""
        for name, (default, what_happens) in _NO_EFFECT.items():
            if getattr(self, name) != default:
                warnings.warn(f"CacheActivationsRunnerConfig.{name}={getattr(self, name)!r} has no effect in "
                              f"saecore: {what_happens}", UserWarning, stacklevel=3)

    @property
    def sliced_context_size(self) -> int:
        return len(range(self.context_size)[slice(*self.seqpos_slice)])

    @property
    def bytes_per_token(self) -> int:
        return self.d_in * dtype_from_name(self.dtype).itemsize

    @property
    def n_tokens_in_batch(self) -> int:
        return self.model_batch_size * self.sliced_context_size

    @property
    def n_tokens_in_buffer(self) -> int:
        per_buffer = int(self.buffer_size_gb * 1e9) // self.bytes_per_token
        return per_buffer - per_buffer % self.n_tokens_in_batch

    @property
    def n_batches_in_buffer(self) -> int:
        return self.n_tokens_in_buffer // self.n_tokens_in_batch

    @property
    def n_seq_in_dataset(self) -> int:
        return self.training_tokens // self.sliced_context_size

    @property
    def n_seq_in_buffer(self) -> int:
        return self.n_tokens_in_buffer // self.sliced_context_size

    @property
    def n_buffers(self) -> int:
        return math.ceil(self.training_tokens / self.n_tokens_in_buffer)

    def llm_source_config(self, dataset: Any = None) -> LLMSourceConfig:
        """The ``llm`` source that produces the prompts and activations (no shuffling buffer is used)."""
        return LLMSourceConfig(
            model_name=self.model_name,
            model_class_name="auto" if self.model_class_name == "HookedTransformer" else self.model_class_name,
            model_from_pretrained_kwargs=self.model_from_pretrained_kwargs or None,
            hook_name=self.hook_name,
            autocast_lm=self.autocast_lm,
            llm_device=self.device,
            dataset_path="" if dataset is not None else self.dataset_path,
            dataset=dataset,
            streaming=self.streaming,
            context_size=self.context_size,
            prepend_bos=self.prepend_bos,
            seqpos_slice=self.seqpos_slice,
            store_batch_size_prompts=self.model_batch_size,
            n_batches_in_buffer=1,
            verbose=False,
        )


def _tokenized_context_size(dataset_path: str) -> int:
    """The length of the first prompt of a tokenized dataset (SAELens's ``context_size=-1``)."""
    dataset = open_dataset(dataset_path, None, split="train", streaming=True)
    try:
        column = choose_column(dataset, column=None, is_tokenized=True, where=f"dataset_path={dataset_path!r}")
    except ConfigError:
        raise ValueError(f"dataset_path={dataset_path!r} is not tokenized; set context_size") from None
    return len(next(iter_column(dataset, column.name, 0))[1])


class CacheActivationsRunner:
    """Writes ``cfg.new_cached_activations_path`` (SAELens's ``CacheActivationsRunner``)."""

    def __init__(self, cfg: CacheActivationsRunnerConfig, override_dataset: Any = None) -> None:
        cfg.warn_fields_without_effect()
        self.cfg = cfg
        self.source = LLMSource(cfg.llm_source_config(override_dataset), seed=cfg.seed, device="cpu")
        if self.source.d_in != cfg.d_in:
            raise ConfigError(f"d_in={cfg.d_in}, but {cfg.hook_name!r} of {cfg.model_name!r} is "
                              f"{self.source.d_in} wide")
        self.context_size = cfg.sliced_context_size
        self.features = activation_features(cfg.hook_name, self.context_size, cfg.d_in, cfg.dtype)

    def __str__(self) -> str:
        tokens = self.cfg.n_seq_in_dataset * self.context_size
        return (f"Activation Cache Runner:\nTotal training tokens: {tokens}\nNumber of buffers: {self.cfg.n_buffers}\n"
                f"Tokens per buffer: {self.cfg.n_tokens_in_buffer}\n"
                f"Disk space required: {tokens * self.cfg.bytes_per_token / 10**9:.2f} GB\n"
                f"Configuration:\n{self.cfg}")

    def run(self) -> Any:
        """Cache the activations; return the written dataset (shuffled when ``cfg.shuffle``)."""
        import datasets

        assert self.cfg.new_cached_activations_path is not None
        folder = Path(self.cfg.new_cached_activations_path)
        try:
            write_hf_activation_dataset(self.source, folder, n_buffers=self.cfg.n_buffers,
                                        n_batches_in_buffer=self.cfg.n_batches_in_buffer,
                                        model_batch_size=self.cfg.model_batch_size, dtype=self.cfg.dtype)
        finally:
            self.source.close()
        dataset = datasets.load_from_disk(str(folder))
        return dataset.shuffle(seed=self.cfg.seed) if self.cfg.shuffle else dataset
