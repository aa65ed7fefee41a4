"""SAELens 6's ``ActivationsStore``, served by the ``llm`` source.

SAELens code builds a store with ``ActivationsStore.from_sae`` / ``from_config`` (or the
constructor) and then draws prompts (``get_batch_tokens``), a model's activations on them
(``get_activations``) or shuffled training batches (``next_batch``). Here each store holds
an :class:`LLMSource` configured from the same arguments: the prompts come from the
source's token stream (the same packing rules, BOS and separators as SAELens), the
activations from its hooked model, and the batches from its mixing buffer. Prompts drawn
with ``get_batch_tokens`` and prompts the buffer consumes come from one stream, as in SAELens.
A saved state is SAELens's: how many documents the prompts have used up. A store from
``from_config_multi_hook`` reads all its hooks in one forward pass (the source's
``additional_hook_names``) and serves ``{hook: activations}``, aligned row for row.

Where the behaviour differs from SAELens 6.54, on purpose:

* ``n_batches_in_buffer`` counts forward passes of ``store_batch_size_prompts`` prompts
  (see :mod:`saecore_source_llm.config`); ``next_batch`` raises a ConfigError naming the
  sizes when the buffer cannot serve ``train_batch_size_tokens``.
* ``reset_input_dataset`` reads the dataset from its first document again. (SAELens's
  replaces an iterator its token stream does not read, so there the prompts continue.)
* ``shuffle_input_dataset`` reads the shuffled dataset from its start at once. (SAELens's
  keeps the order it is reading until the pass ends, unless no prompt was read yet.)
* ``dataset_trust_remote_code=True`` has no effect and says so: ``datasets`` 4 and later run no
  dataset scripts.
* ``n_dataset_processed`` counts a document once a prompt has used its last token; SAELens
  counts it once the next document is started, so at a document boundary its count is
  one lower. Saved states load in either library.
* With ``cached_activations_path`` (see :mod:`saecore_source_llm.cached_prompt_activations`)
  ``get_raw_llm_batch`` serves the cache's prompts in SAELens's order, with token ids as
  integers (SAELens's are in the store's dtype). ``next_batch`` mixes them in saecore's
  buffer, whose shuffle is not SAELens's. saecore's cache layout is read too.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from saecore.dtypes import dtype_from_name
from saecore.errors import ConfigError
from saecore.io.atomic import write_atomically
from saecore.io.sae_files import read_safetensors
from saecore_source_llm.cached_prompt_activations import CachedPromptActivations
from saecore_source_llm.config import LLMSourceConfig
from saecore_source_llm.hooked_model import HookedModel
from saecore_source_llm.mixing_buffer import MixingBuffer
from saecore_source_llm.model_loading import wrap_model
from saecore_source_llm.source import LLMSource
from saecore_source_llm.token_stream import StreamPosition

SeparatorToken = int | Literal["bos", "eos", "sep"] | None
ACTIVATIONS_STORE_STATE_FILENAME = "activations_store_state.safetensors"


class ActivationsStore:
    """Prompts, activations and shuffled activation batches of one hook of a language model (SAELens's API)."""

    def __init__(
        self,
        model: Any,
        dataset: Any,
        streaming: bool,
        hook_name: str,
        hook_head_index: int | None,
        context_size: int,
        d_in: int,
        n_batches_in_buffer: int,
        total_training_tokens: int,
        store_batch_size_prompts: int,
        train_batch_size_tokens: int,
        prepend_bos: bool,
        normalize_activations: str,
        device: torch.device | str,
        dtype: str | torch.dtype,
        cached_activations_path: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        autocast_lm: bool = False,
        dataset_trust_remote_code: bool | None = None,
        seqpos_slice: tuple[int | None, ...] = (None,),
        exclude_special_tokens: torch.Tensor | None = None,
        disable_concat_sequences: bool = False,
        sequence_separator_token: SeparatorToken = "bos",
        activations_mixing_fraction: float = 0.5,
        use_chat_formatting: bool = False,
        *,
        additional_hook_names: Sequence[str] = (),
    ) -> None:
        """SAELens's arguments; ``additional_hook_names`` (saecore's) are read in the same forward pass.

        With ``cached_activations_path`` the activations come from that cache, and ``dataset``
        may be None (the store then has no prompts: only activation batches).
        """
        if dataset is None and cached_activations_path is None:
            raise ConfigError("dataset is None and cached_activations_path is None: give a dataset name, local data "
                              "files or a datasets object, or a cache folder")
        if dataset_trust_remote_code:
            warnings.warn("ActivationsStore: dataset_trust_remote_code=True has no effect (datasets 4 and later run no "
                          "dataset scripts)", stacklevel=2)
        self.model = model
        self.model_kwargs: dict[str, Any] = dict(model_kwargs or {})
        self.hook_name = hook_name
        self.hook_head_index = hook_head_index
        self.context_size = context_size
        self.d_in = d_in
        self.n_batches_in_buffer = n_batches_in_buffer
        self.total_training_tokens = total_training_tokens
        self.store_batch_size_prompts = store_batch_size_prompts
        self.train_batch_size_tokens = train_batch_size_tokens
        self.prepend_bos = prepend_bos
        self.normalize_activations = normalize_activations
        self.device = torch.device(device)
        self.dtype = dtype_from_name(dtype)
        self.cached_activations_path = cached_activations_path
        self.autocast_lm = autocast_lm
        self.dataset_trust_remote_code = dataset_trust_remote_code
        self.seqpos_slice = tuple(seqpos_slice)
        self.exclude_special_tokens = exclude_special_tokens
        self.disable_concat_sequences = disable_concat_sequences
        self.sequence_separator_token = sequence_separator_token
        self.activations_mixing_fraction = activations_mixing_fraction
        self.use_chat_formatting = use_chat_formatting
        self._cache: CachedPromptActivations | None = None
        self._cache_buffer: MixingBuffer | None = None
        self._cached_chunks: Iterator[tuple[torch.Tensor, torch.Tensor]] = iter(())
        self.hook_widths = {hook_name: d_in}
        self._llm_source: LLMSource | None = None
        if cached_activations_path is not None:
            self.load_cached_activation_dataset()
        if dataset is not None:
            self._llm_source = self._build_llm_source(dataset, streaming, additional_hook_names)

    def _build_llm_source(self, dataset: Any, streaming: bool, additional_hook_names: Sequence[str]) -> LLMSource:
        by_name = isinstance(dataset, str)
        source = LLMSource(
            LLMSourceConfig(
                model=self.model,
                dataset_path=dataset if by_name else "",
                dataset=None if by_name else dataset,
                streaming=streaming,
                hook_name=self.hook_name,
                hook_head_index=self.hook_head_index,
                additional_hook_names=list(additional_hook_names),
                context_size=self.context_size,
                prepend_bos=self.prepend_bos,
                sequence_separator_token=self.sequence_separator_token,
                disable_concat_sequences=self.disable_concat_sequences,
                exclude_special_tokens=False if self.exclude_special_tokens is None
                else self.exclude_special_tokens.tolist(),
                seqpos_slice=self.seqpos_slice,
                store_batch_size_prompts=self.store_batch_size_prompts,
                n_batches_in_buffer=self.n_batches_in_buffer,
                activations_mixing_fraction=self.activations_mixing_fraction,
                autocast_lm=self.autocast_lm,
                model_kwargs=self.model_kwargs,
                use_chat_formatting=self.use_chat_formatting,
                verbose=False,
            ),
            device=str(self.device),
        )
        widths = source.streams()
        if widths[self.hook_name] != self.d_in:
            raise ConfigError(f"d_in={self.d_in} but {self.hook_name!r} of the model gives activations of width "
                              f"{widths[self.hook_name]}" + (f" (head {self.hook_head_index})"
                                                             if self.hook_head_index is not None else ""))
        self.hook_widths = widths
        return source

    @property
    def source(self) -> LLMSource:
        """The ``llm`` source serving prompts and model activations; a cache-only store has none."""
        if self._llm_source is None:
            raise ConfigError(f"this store reads only the cached activations at {self.cached_activations_path} "
                              "(dataset=None), so it has no prompts or model activations; give a dataset as well")
        return self._llm_source

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, model: Any, cfg: Any, override_dataset: Any = None) -> ActivationsStore:
        """The store a ``LanguageModelSAERunnerConfig`` trains on; ``override_dataset`` replaces ``dataset_path``.

        A ``CacheActivationsRunnerConfig`` gives ``from_cache_activations``'s store.

        Its device is ``act_store_device`` where the config has one ("with_model": the
        config's ``device``).
        """
        if hasattr(cfg, "new_cached_activations_path"):
            return cls.from_cache_activations(model, cfg)
        if override_dataset is None and cfg.dataset_path == "":
            raise ConfigError("dataset_path is empty and no override_dataset was given; set one of them")
        device = getattr(cfg, "act_store_device", None)
        if device in (None, "with_model"):
            device = cfg.device
        exclude = cfg.exclude_special_tokens
        if exclude is True:
            exclude = special_token_ids(hooked_model(model).tokenizer)
        use_cached = getattr(cfg, "use_cached_activations", False)
        cached_path = getattr(cfg, "resolved_cached_activations_path", None) if use_cached else None
        return cls(
            model=model,
            dataset=override_dataset if override_dataset is not None else cfg.dataset_path,
            streaming=cfg.streaming,
            hook_name=cfg.hook_name,
            hook_head_index=cfg.hook_head_index,
            context_size=cfg.context_size,
            d_in=cfg.sae.d_in,
            n_batches_in_buffer=cfg.n_batches_in_buffer,
            total_training_tokens=cfg.training_tokens,
            store_batch_size_prompts=cfg.store_batch_size_prompts,
            train_batch_size_tokens=cfg.train_batch_size_tokens,
            prepend_bos=cfg.prepend_bos,
            normalize_activations=cfg.sae.normalize_activations,
            device=device,
            dtype=cfg.dtype,
            cached_activations_path=cached_path,
            model_kwargs=getattr(cfg, "model_kwargs", None),
            autocast_lm=cfg.autocast_lm,
            # SAELens's default is True; only a value the user gave is worth a warning.
            dataset_trust_remote_code=cfg.dataset_trust_remote_code
            if "dataset_trust_remote_code" in getattr(cfg, "model_fields_set", ()) else None,
            seqpos_slice=cfg.seqpos_slice,
            exclude_special_tokens=None if exclude is False else torch.tensor(list(exclude), dtype=torch.long),
            disable_concat_sequences=cfg.disable_concat_sequences,
            sequence_separator_token=cfg.sequence_separator_token,
            activations_mixing_fraction=cfg.activations_mixing_fraction,
            use_chat_formatting=getattr(cfg, "use_chat_formatting", False),
        )

    @classmethod
    def from_cache_activations(cls, model: Any, cfg: Any) -> ActivationsStore:
        """A store serving the cache a ``CacheActivationsRunnerConfig`` writes, ``model_batch_size`` prompts a batch."""
        return cls(
            model=model, dataset=None, streaming=False, hook_name=cfg.hook_name, hook_head_index=None,
            context_size=cfg.context_size, d_in=cfg.d_in, n_batches_in_buffer=cfg.n_batches_in_buffer,
            total_training_tokens=cfg.training_tokens, store_batch_size_prompts=cfg.model_batch_size,
            train_batch_size_tokens=cfg.model_batch_size, prepend_bos=False, normalize_activations="none",
            device=cfg.device, dtype=cfg.dtype, cached_activations_path=cfg.new_cached_activations_path,
        )

    @classmethod
    def from_sae(
        cls,
        model: Any,
        sae: Any,
        dataset: Any,
        dataset_trust_remote_code: bool = False,
        context_size: int | None = None,
        streaming: bool = True,
        store_batch_size_prompts: int = 8,
        n_batches_in_buffer: int = 8,
        train_batch_size_tokens: int = 4096,
        total_tokens: int = 10**9,
        device: str = "cpu",
        disable_concat_sequences: bool = False,
        sequence_separator_token: SeparatorToken = "bos",
    ) -> ActivationsStore:
        """The store for evaluating ``sae``: its hook, head, context size, BOS and seqpos_slice from its metadata."""
        metadata = sae.cfg.metadata
        context_size = context_size if context_size is not None else metadata.context_size
        for name, value in (("hook_name", metadata.hook_name), ("context_size", context_size),
                            ("prepend_bos", metadata.prepend_bos)):
            if value is None:
                raise ConfigError(f"the SAE's metadata has no {name}; set sae.cfg.metadata.{name}"
                                  + (" or pass context_size" if name == "context_size" else ""))
        return cls(
            model=model,
            dataset=dataset,
            d_in=sae.cfg.d_in,
            hook_name=metadata.hook_name,
            hook_head_index=metadata.hook_head_index,
            context_size=context_size,
            prepend_bos=metadata.prepend_bos,
            streaming=streaming,
            store_batch_size_prompts=store_batch_size_prompts,
            train_batch_size_tokens=train_batch_size_tokens,
            n_batches_in_buffer=n_batches_in_buffer,
            total_training_tokens=total_tokens,
            normalize_activations=sae.cfg.normalize_activations,
            dataset_trust_remote_code=dataset_trust_remote_code,
            dtype=sae.cfg.dtype,
            device=device,
            seqpos_slice=tuple(metadata.seqpos_slice or (None,)),
            disable_concat_sequences=disable_concat_sequences,
            sequence_separator_token=sequence_separator_token,
        )

    @classmethod
    def from_config_multi_hook(
        cls,
        model: Any,
        *,
        dataset: Any,
        hook_names: list[str],
        hook_d_ins: dict[str, int],
        hook_head_indices: dict[str, int | None] | None = None,
        streaming: bool = True,
        context_size: int = 128,
        n_batches_in_buffer: int = 20,
        total_training_tokens: int = 2_000_000,
        store_batch_size_prompts: int = 32,
        train_batch_size_tokens: int = 4096,
        prepend_bos: bool = True,
        normalize_activations: str = "none",
        device: torch.device | str = "cpu",
        dtype: str = "float32",
        model_kwargs: dict[str, Any] | None = None,
        autocast_lm: bool = False,
        dataset_trust_remote_code: bool | None = None,
        seqpos_slice: tuple[int | None, ...] = (None,),
        exclude_special_tokens: torch.Tensor | None = None,
        disable_concat_sequences: bool = False,
        sequence_separator_token: SeparatorToken = "bos",
        activations_mixing_fraction: float = 0.5,
        use_chat_formatting: bool = False,
    ) -> ActivationsStore:
        """A store reading every hook of ``hook_names`` in one forward pass (the first is the single-hook view's).

        Heads are read flattened: a per-head hook cannot also select one head here.
        """
        hooks = list(dict.fromkeys(hook_names))
        if not hooks:
            raise ConfigError("hook_names is empty; give at least one hook")
        missing = [hook for hook in hooks if hook not in hook_d_ins]
        if missing:
            raise ConfigError(f"hook_d_ins has no width for {missing}; give one for every hook in hook_names")
        heads = {hook: head for hook, head in (hook_head_indices or {}).items() if head is not None}
        if heads and len(hooks) > 1:
            raise ConfigError(f"hook_head_indices={heads}: a store reading several hooks reads heads flattened; "
                              "use one store per head")
        store = cls(
            model=model, dataset=dataset, streaming=streaming, hook_name=hooks[0],
            hook_head_index=heads.get(hooks[0]), context_size=context_size, d_in=hook_d_ins[hooks[0]],
            n_batches_in_buffer=n_batches_in_buffer, total_training_tokens=total_training_tokens,
            store_batch_size_prompts=store_batch_size_prompts, train_batch_size_tokens=train_batch_size_tokens,
            prepend_bos=prepend_bos, normalize_activations=normalize_activations, device=device, dtype=dtype,
            model_kwargs=model_kwargs, autocast_lm=autocast_lm, dataset_trust_remote_code=dataset_trust_remote_code,
            seqpos_slice=seqpos_slice, exclude_special_tokens=exclude_special_tokens,
            disable_concat_sequences=disable_concat_sequences, sequence_separator_token=sequence_separator_token,
            activations_mixing_fraction=activations_mixing_fraction, use_chat_formatting=use_chat_formatting,
            additional_hook_names=hooks[1:],
        )
        wrong = [hook for hook, width in store.hook_widths.items() if width != hook_d_ins[hook]]
        if wrong:
            given = {hook: hook_d_ins[hook] for hook in wrong}
            found = {hook: store.hook_widths[hook] for hook in wrong}
            raise ConfigError(f"hook_d_ins gives {given} but the model's activations there have widths {found}")
        return store

    # -- the activation cache ---------------------------------------------------------------
    def load_cached_activation_dataset(self) -> Any:
        """Open ``cached_activations_path`` and read it from its first prompt again.

        Returns the cache's ``datasets.Dataset`` in SAELens's layout, None in saecore's
        layout or without a cache.
        """
        if self.cached_activations_path is None:
            return None
        self._cache = CachedPromptActivations(self.cached_activations_path, hook_name=self.hook_name,
                                              context_size=self.context_size, d_in=self.d_in, device=self.device,
                                              dtype=self.dtype)
        return self._cache.dataset

    @property
    def cached_activation_dataset(self) -> Any:
        """The cache's ``datasets.Dataset`` (SAELens's layout), else None."""
        return None if self._cache is None else self._cache.dataset

    # -- the dataset ----------------------------------------------------------------------
    @property
    def dataset(self) -> Any:
        """The ``datasets`` object prompts are read from."""
        return self.source.dataset

    @property
    def is_dataset_tokenized(self) -> bool:
        return self.source.column.tokenized

    @property
    def tokens_column(self) -> str:
        return self.source.column.name

    @property
    def training_context_size(self) -> int:
        """Positions of each prompt kept after ``seqpos_slice``."""
        return len(range(self.context_size)[slice(*self.seqpos_slice)])

    def shuffle_input_dataset(self, seed: int, buffer_size: int = 1) -> None:
        """Shuffle the dataset and read it from the start; a streamed one by shards and within ``buffer_size`` rows."""
        dataset = self.source.dataset
        if _is_streamed(dataset):
            shuffled = dataset.shuffle(seed=seed, buffer_size=buffer_size)
        else:
            shuffled = dataset.shuffle(seed=seed)
        self.source.restart_stream(shuffled)

    def reset_input_dataset(self) -> None:
        """Read the dataset from its first document again."""
        self.source.restart_stream()

    # -- where the store is in the dataset ---------------------------------------------------
    @property
    def n_dataset_processed(self) -> int:
        """Documents the prompts drawn so far have used up, counting every pass over a dataset of known length."""
        position = self.source.stream.position
        if position.epoch == 0:
            return position.document
        return position.epoch * _length(self.dataset, "n_dataset_processed after the first pass") + position.document

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"n_dataset_processed": torch.tensor(self.n_dataset_processed)}

    def save(self, file_path: str) -> None:
        """Write ``state_dict`` as a safetensors file."""
        state = self.state_dict()
        write_atomically(Path(file_path), lambda tmp: save_file(state, str(tmp)))

    def save_to_checkpoint(self, checkpoint_path: str | Path) -> None:
        self.save(str(Path(checkpoint_path) / ACTIVATIONS_STORE_STATE_FILENAME))

    def load(self, file_path: str) -> None:
        """Continue reading after the documents a saved store had used up, if that is further than this store is.

        The mixing buffer keeps what it holds; only the prompts read next change.
        """
        processed = int(read_safetensors(Path(file_path)).get("n_dataset_processed", torch.tensor(0)))
        if processed <= self.n_dataset_processed:
            return
        if not _is_streamed(self.dataset):
            processed %= _length(self.dataset, "load")
        self.source.restart_stream(position=StreamPosition(document=processed))

    def load_from_checkpoint(self, checkpoint_path: str | Path) -> None:
        self.load(str(Path(checkpoint_path) / ACTIVATIONS_STORE_STATE_FILENAME))

    # -- prompts and activations ------------------------------------------------------------
    def get_batch_tokens(
        self, batch_size: int | None = None, raise_at_epoch_end: bool = False, move_to_model_device: bool = True
    ) -> torch.Tensor:
        """The next ``[batch_size, context_size]`` prompts (default ``store_batch_size_prompts``).

        With ``raise_at_epoch_end`` a batch that reaches the end of the dataset is dropped
        with a StopIteration, and the next call starts the next pass from its first prompt.
        """
        stream = self.source.stream
        epoch = stream.position.epoch
        tokens = stream.next_prompts(batch_size or self.store_batch_size_prompts)
        if raise_at_epoch_end and stream.position.epoch > epoch:
            self.source.restart_stream(position=StreamPosition(epoch=epoch + 1))
            raise StopIteration(f"the dataset ran out during this batch; pass {epoch + 2} begins")
        return tokens.to(self.source.model.input_device) if move_to_model_device else tokens

    @torch.no_grad()
    def get_activations(self, batch_tokens: torch.Tensor) -> torch.Tensor:
        """``[batch, positions after seqpos_slice, d_in]`` float32 activations at ``hook_name`` (heads flattened)."""
        return self.get_multi_hook_activations(batch_tokens)[self.hook_name]

    @torch.no_grad()
    def get_multi_hook_activations(self, batch_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each hook's ``[batch, positions after seqpos_slice, width]`` activations, from one forward pass."""
        rows = self.source.activations(batch_tokens).reshape(batch_tokens.shape[0], -1, self.source.d_in)
        return self._split(rows)

    def _split(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The hooks' columns of ``rows`` (side by side, in ``hook_widths`` order)."""
        return dict(zip(self.hook_widths, rows.split(list(self.hook_widths.values()), dim=-1)))

    def get_raw_llm_batch(self, raise_on_epoch_end: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``([n, d_in] activations, [n] token ids)`` of the next ``store_batch_size_prompts`` prompts.

        From a cache, the cache's next prompts; their token ids are None where it has none.
        """
        if self._cache is not None:
            return self._cache.next_prompts(self.store_batch_size_prompts, raise_on_epoch_end)
        tokens = self.get_batch_tokens(raise_at_epoch_end=raise_on_epoch_end)
        activations = self.get_activations(tokens).reshape(-1, self.d_in)
        return activations, tokens[:, slice(*self.seqpos_slice)].reshape(-1).to(self.device)

    def get_filtered_llm_batch(self, raise_on_epoch_end: bool = False) -> torch.Tensor:
        """``get_raw_llm_batch``'s activations without those at ``exclude_special_tokens``."""
        activations, token_ids = self.get_raw_llm_batch(raise_on_epoch_end)
        if self.exclude_special_tokens is None or token_ids is None:
            return activations
        return activations[~torch.isin(token_ids, self.exclude_special_tokens.to(token_ids.device))]

    # -- shuffled training batches ----------------------------------------------------------
    def next_batch(self) -> torch.Tensor:
        """The next ``[train_batch_size_tokens, d_in]`` batch at ``hook_name`` from the mixing buffer."""
        return self._next_rows()[self.hook_name]

    def _next_rows(self) -> dict[str, torch.Tensor]:
        if self._cache is not None:
            return {self.hook_name: self._next_cached_batch()}
        return self._split(self.source.next_batch(self.train_batch_size_tokens))

    def _next_cached_batch(self) -> torch.Tensor:
        """The next batch from a mixing buffer of ``n_batches_in_buffer`` cached batches, refilled as it empties."""
        size = self.train_batch_size_tokens
        if self._cache_buffer is None:
            capacity = self.n_batches_in_buffer * self.store_batch_size_prompts * self.context_size
            self._cache_buffer = MixingBuffer(capacity, self.d_in, mixing_fraction=self.activations_mixing_fraction,
                                              device=self.device, seed=42)
            self._cached_chunks = self._filtered_cached_chunks()
        buffer = self._cache_buffer
        if not buffer.can_serve(size):
            if size > buffer.servable:
                raise ConfigError(f"train_batch_size_tokens={size} is more than the mixing buffer serves per refill "
                                  f"({buffer.servable} of n_batches_in_buffer={self.n_batches_in_buffer} × "
                                  f"store_batch_size_prompts={self.store_batch_size_prompts} × context_size="
                                  f"{self.context_size} activations); raise n_batches_in_buffer")
            buffer.refill(self._cached_chunks)
        return buffer.take(size).to(self.dtype)

    def _filtered_cached_chunks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless filtered cached batches, with placeholder origins (a cache needs no resume bookkeeping)."""
        while True:
            try:
                activations = self.get_filtered_llm_batch(raise_on_epoch_end=True)
            except StopIteration:
                warnings.warn("every prompt of the activation cache was served; starting its next pass", stacklevel=2)
                continue
            yield activations, torch.zeros(activations.shape[0], dtype=torch.long)

    def get_multi_hook_data_loader(self) -> Iterator[dict[str, torch.Tensor]]:
        """Endless ``{hook: [train_batch_size_tokens, width]}`` batches; row ``i`` of every hook is one token."""
        while True:
            yield self._next_rows()

    def __next__(self) -> torch.Tensor:
        return self.next_batch()

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def get_data_loader(self) -> Iterator[torch.Tensor]:
        """An endless iterator of training batches (the store itself)."""
        return self


def hooked_model(model: Any) -> HookedModel:
    """A model object from Python behind saecore's model interface (with its tokenizer, for a transformers model).

    A HookedModel is returned as it is, so callers wrap a model once and pass the result on.
    """
    if isinstance(model, HookedModel):
        return model
    return wrap_model(model, LLMSourceConfig(model=model, verbose=False))


def special_token_ids(tokenizer: Any) -> list[int]:
    """The tokenizer's BOS, EOS, PAD, SEP and decoder-start ids: SAELens's ``exclude_special_tokens=True``."""
    attributes = ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id")
    return sorted({getattr(tokenizer, name, None) for name in attributes} - {None})


def _length(dataset: Any, what: str) -> int:
    if _is_streamed(dataset):
        raise ConfigError(f"{what} needs the dataset's length, which a streamed dataset does not know; "
                          "open it with streaming=False")
    return len(dataset)


def _is_streamed(dataset: Any) -> bool:
    import datasets

    return isinstance(dataset, datasets.IterableDataset)

