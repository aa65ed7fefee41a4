"""The ``llm`` activation source: a language model's activations at one or more hooks, shuffled.

Prompts come from a :class:`TokenStream`; each forward pass runs
``store_batch_size_prompts`` of them and stops at the deepest hooked layer. The
activations (after ``seqpos_slice``, head selection and dropping special tokens) go into
a :class:`MixingBuffer`, which serves the trainer's batches.

With ``additional_hook_names`` one forward pass reads every hook, and a row is the
hooks' activations side by side (``hook_name``'s columns first). Each hook is a
*stream* (``streams()``): the buffer shuffles whole rows, so the streams stay aligned,
and many SAEs, one per hook, train on one run of the model. A stream whose hook has a
target hook (``hook_name_out``, ``additional_hook_names_out``) is an (input, target) pair
for a transcoder, its input's columns followed by its target's, so SAEs and transcoders on
several layers train together too.

Resuming is exact. A forward pass is identified by a running *chunk* number; each buffer
slot records which chunk and position its activation came from. A saved state holds the
stream position, the buffer's order and RNG, the slot origins, and the prompts of the
chunks still present in the buffer, never the activations themselves (the buffer can be
gigabytes). On resume those chunks are run through the model again, in the same groups,
which reproduces the buffer bit for bit on the same device. The price is re-running
those forward passes once at resume time: with ``activations_mixing_fraction = f`` an
activation survives k refills with probability fᵏ, so chunks stay referenced for about
log(1/(chunk size))/log(f) refills.

With ``prefetch_llm_batches`` the chunks are produced by a background thread
(:class:`Prefetcher`) while the trainer runs its SAE step. The thread produces them in the
same order, so the batches are unchanged, and a saved state describes only the chunks the
buffer has taken (the thread's stream runs ahead of it). ``evaluate_sae`` splices the SAE
into the model (:mod:`spliced_evals`); a lock keeps it and the thread from using the model
at the same time.

In data-parallel training ``shard_for_rank`` makes each rank read its own share of the
training documents (every ``world_size``-th), shuffled with its own seed. The eval
prompts do not depend on the rank. ``hold_out_eval_prompts`` takes the documents the eval
prompts come from out of the training stream.
"""

from __future__ import annotations

import itertools
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from saecore.errors import ConfigError, SAEFileError
from saecore.sources.base import ActivationSource
from saecore.sources.cached import derive_seed
from saecore.sources.device_copy import batch_to_device
from saecore_source_llm.config import LLMSourceConfig
from saecore_source_llm.dataset_reader import ALL_DOCUMENTS, DocumentSelection, choose_column, open_dataset
from saecore_source_llm.hooked_model import HookedModel
from saecore_source_llm.memory import check_fits
from saecore_source_llm.mixing_buffer import EMPTY, MixingBuffer
from saecore_source_llm.model_loading import load_model
from saecore_source_llm.prefetch import Prefetcher
from saecore_source_llm.spliced_evals import SpliceSite, evaluated_positions, spliced_metrics
from saecore_source_llm.token_stream import StreamPosition, TokenStream

SPECIAL_TOKEN_ATTRIBUTES = ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id")


@dataclass(frozen=True)
class _Chunk:
    """One forward pass: its prompts, kept activations and their origins, and where the stream is after it."""

    index: int
    tokens: torch.Tensor
    activations: torch.Tensor
    origins: torch.Tensor
    position_after: StreamPosition


class LLMSource(ActivationSource):
    """Serves ``[n, d_in]`` float32 activations of a language model at ``cfg.hook_names``, side by side."""

    cfg: LLMSourceConfig

    def __init__(self, cfg: LLMSourceConfig, *, seed: int = 42, device: str = "cpu") -> None:
        super().__init__(cfg, seed=seed, device=device)
        self.llm_device = torch.device(cfg.llm_device) if cfg.llm_device is not None else self.device
        self.buffer_device = torch.device(cfg.buffer_device) if cfg.buffer_device is not None else self.device
        self.model: HookedModel = load_model(cfg, self.llm_device)
        if cfg.compile_llm:
            self.model.compile(mode=cfg.llm_compilation_mode, backend=cfg.llm_compilation_backend)
        self.hook_names = cfg.hook_names
        self.model.check_hook_name(cfg.hook_name)
        for index, name in enumerate(cfg.additional_hook_names):
            self.model.check_hook_name(name, f"additional_hook_names[{index}]")
        for where, name in cfg.output_hooks.items():
            self.model.check_hook_name(name, where)
        self._check_context_size()
        self.dataset = open_dataset(cfg.dataset_path, cfg.dataset, split=cfg.dataset_split, streaming=cfg.streaming,
                                    trust_remote_code=cfg.dataset_trust_remote_code)
        self.dataset_name = f"dataset_path={cfg.dataset_path!r}" if cfg.dataset is None else "the dataset object"
        self.column = choose_column(self.dataset, column=cfg.dataset_column, is_tokenized=cfg.is_dataset_tokenized,
                                    where=self.dataset_name, chat=cfg.use_chat_formatting)
        text = not self.column.tokenized
        self.bos_token_id = self._special_token("bos", "prepend_bos=True") if text and cfg.prepend_bos else None
        self.separator_token_id = (
            self._separator_token() if text and not cfg.disable_concat_sequences else None
        )
        self.excluded_tokens = self._excluded_tokens()
        self._model_lock = threading.Lock()
        self._widths = self._probe()
        self._d_in = sum(self._widths.values())
        self.chunk_size = cfg.store_batch_size_prompts * cfg.training_context_size
        capacity = cfg.buffer_activations
        self.prefetch_chunks = cfg.prefetch_chunks
        held_chunks = 1 + self.prefetch_chunks
        buffer_bytes = (capacity + held_chunks * self.chunk_size) * self._d_in * 4
        prefetched = f" + {self.prefetch_chunks} forward passes prefetched" if self.prefetch_chunks else ""
        widths = (f" ({' + '.join(f'{width} at {name}' for name, width in self._widths.items())})"
                  if len(self._widths) > 1 else "")
        self.memory_report = check_fits(
            buffer_bytes, self.buffer_device,
            f"llm source: mixing buffer of {capacity:,} activations{prefetched} × d_in {self._d_in}{widths} "
            "(float32)",
            remedy="lower n_batches_in_buffer, store_batch_size_prompts, context_size or prefetch_llm_batches",
        )
        if cfg.verbose:
            print(self.memory_report, file=sys.stderr)
        self.buffer = MixingBuffer(
            capacity, self._d_in, mixing_fraction=cfg.activations_mixing_fraction, device=self.buffer_device,
            seed=seed,
        )
        self._eval_tokens: torch.Tensor | None = None
        self._selection = ALL_DOCUMENTS
        if cfg.hold_out_eval_prompts:
            self._selection = DocumentSelection(first=self._hold_out_eval_documents())
        self._prefetcher: Prefetcher[_Chunk] | None = None
        self._start_stream(StreamPosition(), next_chunk=0)

    # -- the contract ---------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self._d_in

    def next_batch(self, batch_size: int) -> torch.Tensor:
        if not self.buffer.can_serve(batch_size):
            if batch_size > self.buffer.servable:
                self.check_batch_size(batch_size)
            self.buffer.refill(self._chunks)
            self._forget_unused_chunks()
        return batch_to_device(self.buffer.take(batch_size), self.device)

    def check_batch_size(self, batch_size: int) -> None:
        self.cfg.check_train_batch_size(batch_size)

    @property
    def target_width(self) -> int:
        """The target's width when the whole row is one (input, target) pair (``hook_name_out`` alone), else 0."""
        return self.stream_target_width(self.cfg.hook_name) if len(self.cfg.hook_pairs) == 1 else 0

    def stream_target_width(self, stream: str) -> int:
        """The width of ``stream``'s target hook, or 0 for a stream of one hook."""
        target = self.cfg.hook_pairs.get(stream)
        return 0 if target is None else self._widths[target]

    def streams(self) -> dict[str, int]:
        """One stream per input hook, named by it: ``hook_name`` first, then ``additional_hook_names``.

        A stream with a target hook is (input, target) pairs: both hooks' columns.
        """
        return {hook: self._widths[hook] + (self._widths[target] if target else 0)
                for hook, target in self.cfg.hook_pairs.items()}

    def sae_metadata(self) -> dict[str, Any]:
        """An SAE on the whole row; its ``additional_hook_names`` let ``saecore eval`` rebuild this source."""
        metadata = self.stream_metadata(self.cfg.hook_name)
        if self.cfg.additional_hook_names:
            metadata["additional_hook_names"] = list(self.cfg.additional_hook_names)
        if self.cfg.additional_hook_names_out:
            metadata["additional_hook_names_out"] = dict(self.cfg.additional_hook_names_out)
        return metadata

    def stream_metadata(self, stream: str) -> dict[str, Any]:
        """SAELens's metadata for a coder on one stream: ``hook_name`` is the stream's, ``hook_name_out`` its target.

        ``hook_head_index`` can only be set with one hook, so it always belongs to the hook it
        was given for.
        """
        pairs = self.cfg.hook_pairs
        if stream not in pairs:
            raise ConfigError(f"stream {stream!r} is not read by this llm source; its streams are the hooks "
                              f"{', '.join(pairs)}")
        cfg = self.cfg
        target = {} if pairs[stream] is None else {"hook_name_out": pairs[stream]}
        return {
            "model_name": self.model.name,
            "model_class_name": self.model.kind,
            "hook_name": stream,
            "hook_head_index": cfg.hook_head_index,
            "context_size": cfg.context_size,
            "prepend_bos": cfg.prepend_bos,
            "dataset_path": cfg.dataset_path or None,
            "seqpos_slice": list(cfg.seqpos_slice),
            "exclude_special_tokens": cfg.exclude_special_tokens,
            "sequence_separator_token": cfg.sequence_separator_token,
            "disable_concat_sequences": cfg.disable_concat_sequences,
            **target,
        }

    def evaluate_sae(self, sae: Any, scaling_factor: float | None = None) -> dict[str, float]:
        """CE-loss and KL scores with ``sae`` spliced in at its hook (see :mod:`spliced_evals`).

        Always on the same prompts: the first ``n_eval_batches × eval_batch_size_prompts``
        of the dataset, read by a stream of their own, so evaluating never moves the
        training stream and evaluations at different steps compare directly. A transcoder is
        scored by replacement: its prediction from ``hook_name`` replaces ``hook_name_out``.
        Its output scale is not among the arguments, so a transcoder whose input scale is not
        folded in yet (``scaling_factor`` given) gets no scores until it is.
        """
        if sae.cfg.PREDICTS_TARGET and scaling_factor is not None:
            return {}
        site = self._transcoder_site(sae) if sae.cfg.PREDICTS_TARGET else self._splice_site(sae)
        if site is None:
            return {}
        cfg = self.cfg
        tokens = self.eval_tokens()
        keep = evaluated_positions(tokens, self._eval_excluded_tokens(), cfg.seqpos_slice)
        with self._model_lock:  # the prefetch thread must not run the model while the SAE is spliced in
            return spliced_metrics(
                self.model, sae, tokens, keep, site,
                scaling_factor=scaling_factor, batch_size=cfg.eval_batch_size_prompts or cfg.store_batch_size_prompts,
                autocast=cfg.autocast_lm,
            )

    def _transcoder_site(self, sae: Any) -> SpliceSite:
        """Where a transcoder reads and writes: the pair of hooks its ``metadata.hook_name`` names.

        A source of one pair scores a transcoder there whatever its metadata says.
        """
        pairs = {hook: target for hook, target in self.cfg.hook_pairs.items() if target is not None}
        hook = sae.cfg.metadata.hook_name
        if hook not in pairs and len(self.cfg.hook_pairs) == 1:
            hook = self.cfg.hook_name
        if hook not in pairs:
            raise ConfigError(f"{type(sae).__name__} is a transcoder reading {hook!r} (its metadata.hook_name), but "
                              f"this llm source has no target hook for it (its pairs: {pairs or 'none'}); set "
                              f"hook_name_out (or additional_hook_names_out) to the hook it predicts "
                              f"({sae.cfg.metadata.hook_name_out!r} in its metadata)")
        target = pairs[hook]
        if self._widths[target] != sae.cfg.d_target:
            raise ConfigError(f"the transcoder has d_out={sae.cfg.d_target} but its target hook {target!r} "
                              f"of {self.model.name} gives activations of width {self._widths[target]}")
        return SpliceSite(hook, output_hook=target)

    def _splice_site(self, sae: Any) -> SpliceSite | None:
        """Where ``sae`` replaces activations: the stream its ``metadata.hook_name`` names, else ``hook_name``.

        An SAE reading every hook side by side has no single place in the model: None.
        """
        cfg, widths, d_in = self.cfg, self._widths, sae.cfg.d_in
        hook = getattr(getattr(sae.cfg, "metadata", None), "hook_name", None)
        if hook in widths and widths[hook] == d_in:
            return SpliceSite(hook, cfg.hook_head_index)
        if len(widths) > 1 and d_in == self._d_in:
            warnings.warn(f"llm source: the SAE reads all {len(widths)} hooks side by side, so it cannot be "
                          "spliced in at one of them; the CE-loss and KL evaluations are skipped", stacklevel=3)
            return None
        if hook not in widths:
            if len(widths) > 1:
                raise ConfigError(f"this llm source reads {len(widths)} hooks ({', '.join(widths)}) and splices an "
                                  f"SAE in at the hook its metadata names, but the SAE's metadata.hook_name is "
                                  f"{hook!r}; set it to the hook the SAE was trained on")
            hook = cfg.hook_name
        if widths[hook] != d_in:
            raise ConfigError(f"the SAE has d_in={d_in} but {hook!r} of {self.model.name} gives activations of "
                              f"width {widths[hook]}; evaluate it on the hook it was trained on")
        return SpliceSite(hook, cfg.hook_head_index)

    def eval_tokens(self) -> torch.Tensor:
        """``[prompts, context_size]``: the fixed prompts the spliced evaluations run on."""
        if self._eval_tokens is None:
            self._eval_tokens = self._token_stream(StreamPosition(), None).next_prompts(self.cfg.eval_prompts)
        return self._eval_tokens

    def _hold_out_eval_documents(self) -> int:
        """Read the eval prompts now; the number of leading documents they use (the training stream skips them).

        A document the last eval prompt ends inside is held out whole.
        """
        stream = self._token_stream(StreamPosition(), None)
        self._eval_tokens = stream.next_prompts(self.cfg.eval_prompts)
        end = stream.position
        if end.epoch > 0:
            raise ConfigError(
                f"hold_out_eval_prompts=True, but the {self.cfg.eval_prompts} eval prompts (n_eval_batches × "
                "eval_batch_size_prompts) need more than the whole dataset, so nothing would be left to train on; "
                "lower n_eval_batches or eval_batch_size_prompts, or use a larger dataset"
            )
        return end.document + (1 if end.offset else 0)

    def shard_for_rank(self, rank: int, world_size: int) -> bool:
        """From now on read only this rank's training documents (every ``world_size``-th), with its own shuffle.

        Each rank's model runs on its own tokens, so adding ranks divides the work. The eval
        prompts are the same on every rank.
        """
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank={rank} must be between 0 and world_size - 1 = {world_size - 1}")
        if self._next_chunk or self._chunk_tokens:
            raise ConfigError("shard_for_rank must be called before the llm source serves its first batch")
        self._selection = replace(self._selection, rank=rank, world_size=world_size)
        if world_size > 1:
            self.buffer.generator.manual_seed(derive_seed(self.seed, "rank", rank, world_size))
        self._start_stream(StreamPosition(), next_chunk=0)
        return True

    def _eval_excluded_tokens(self) -> torch.Tensor | None:
        """The tokenizer's special tokens plus any listed in exclude_special_tokens."""
        tokenizer = self.model.tokenizer
        ids = {getattr(tokenizer, name, None) for name in SPECIAL_TOKEN_ATTRIBUTES} - {None}
        if isinstance(self.cfg.exclude_special_tokens, list):
            ids |= set(self.cfg.exclude_special_tokens)
        return torch.tensor(sorted(ids), dtype=torch.long) if ids else None

    def state_dict(self) -> dict[str, Any]:
        buffer_state = self.buffer.state_dict()
        needed = torch.cat([buffer_state["origins"], buffer_state["carry_origins"]])
        chunk_ids = torch.unique(needed[needed != EMPTY] // self.chunk_size)
        tokens = [self._chunk_tokens[int(chunk)] for chunk in chunk_ids]
        position = self._consumed_position
        selection = self._selection
        return {
            "layout": torch.tensor([self.buffer.capacity, self.chunk_size, self.cfg.context_size, self._d_in]),
            "hook_names": list(self.hook_names),
            "documents": torch.tensor([selection.first, selection.rank, selection.world_size]),
            "stream_position": torch.tensor([position.epoch, position.document, position.offset]),
            "next_chunk": self._next_chunk,
            "chunk_ids": chunk_ids,
            "chunk_tokens": torch.stack(tokens) if tokens else torch.zeros(0, 0, 0, dtype=torch.long),
            "buffer": buffer_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        layout = [self.buffer.capacity, self.chunk_size, self.cfg.context_size, self._d_in]
        saved = [int(value) for value in state["layout"]]
        if saved != layout:
            names = ("buffer activations", "activations per forward pass", "context_size", "d_in")
            differences = ", ".join(f"{name} {a} → {b}" for name, a, b in zip(names, saved, layout) if a != b)
            raise SAEFileError(f"the saved llm source state does not fit this source ({differences}); resume with "
                               "the n_batches_in_buffer, store_batch_size_prompts, context_size, seqpos_slice and "
                               "hook of the original run")
        self._check_saved_selection(state)
        epoch, document, offset = (int(value) for value in state["stream_position"])
        self._start_stream(StreamPosition(epoch, document, offset), next_chunk=int(state["next_chunk"]))
        self.buffer.load_state_dict(state["buffer"])
        self._chunk_tokens = {int(chunk): tokens for chunk, tokens in zip(state["chunk_ids"], state["chunk_tokens"])}
        self._recompute_buffer()

    def _check_saved_selection(self, state: dict[str, Any]) -> None:
        """The saved position counts documents of the same hooks, held-out part and rank as this source's."""
        hooks = list(state.get("hook_names", self.hook_names))
        if hooks != self.hook_names:
            raise SAEFileError(f"the saved llm source state reads the hooks {hooks}, this source reads "
                               f"{self.hook_names}; resume with the original hook_name and additional_hook_names")
        selection = self._selection
        first, rank, world_size = (int(value) for value in state.get("documents", [0, 0, 1]))
        if first != selection.first:
            raise SAEFileError(f"the saved llm source state holds out the first {first} documents for evaluations, "
                               f"this source {selection.first}; resume with the original hold_out_eval_prompts, "
                               "n_eval_batches, eval_batch_size_prompts and dataset")
        if (rank, world_size) != (selection.rank, selection.world_size):
            raise SAEFileError(f"the saved llm source state is rank {rank}'s of {world_size} data-parallel ranks, "
                               f"this source is rank {selection.rank}'s of {selection.world_size}; resume with the "
                               "same number of ranks")

    def restart_stream(self, dataset: Any = None, position: StreamPosition | None = None) -> None:
        """Read the training documents again from ``position`` (default: the first); from ``dataset`` when given.

        ``dataset`` replaces the one being read, with the same columns (a shuffled copy, for
        ``ActivationsStore.shuffle_input_dataset``). The buffer keeps what it holds, and a
        saved state still finds the prompts of the activations in it.
        """
        if dataset is not None:
            self.dataset = dataset
        held_chunks = self._chunk_tokens
        self._start_stream(position or StreamPosition(), next_chunk=self._next_chunk)
        self._chunk_tokens = held_chunks

    def write_saelens_cache(self, folder: Path, n_tokens: int, dtype: str) -> int:
        """SAELens's cache of this source's next prompts, unshuffled, in buffers of ``n_batches_in_buffer`` passes.

        Whole buffers are written, so the tokens written are ``n_tokens`` rounded up to a buffer.
        """
        from saecore_source_llm.hf_activation_dataset import write_hf_activation_dataset

        cfg = self.cfg
        per_buffer = cfg.n_batches_in_buffer * cfg.store_batch_size_prompts * cfg.training_context_size
        n_buffers = -(-n_tokens // per_buffer)
        write_hf_activation_dataset(self, folder, n_buffers=n_buffers, n_batches_in_buffer=cfg.n_batches_in_buffer,
                                    model_batch_size=cfg.store_batch_size_prompts, dtype=dtype)
        return n_buffers * per_buffer

    def close(self) -> None:
        self._stop_prefetching()
        self._chunk_tokens.clear()
        self._chunks.close()

    # -- producing activations ----------------------------------------------------------------
    def _token_stream(
        self, position: StreamPosition, on_new_epoch: Callable[[int], None] | None,
        selection: DocumentSelection = ALL_DOCUMENTS,
    ) -> TokenStream:
        cfg = self.cfg
        return TokenStream(
            self.dataset, self.column, self.model.tokenizer, context_size=cfg.context_size, bos=self.bos_token_id,
            separator=self.separator_token_id, disable_concat_sequences=cfg.disable_concat_sequences,
            position=position, on_new_epoch=on_new_epoch, selection=selection, vocab_size=self.model.vocab_size,
            dataset_name=self.dataset_name,
        )

    def _start_stream(self, position: StreamPosition, *, next_chunk: int) -> None:
        self._stop_prefetching()
        self.stream = self._token_stream(position, self._announce_epoch, self._selection)
        self._consumed_position = position
        self._next_chunk = next_chunk
        self._chunk_tokens: dict[int, torch.Tensor] = {}
        produced: Iterator[_Chunk] = self._produce_chunks(next_chunk)
        if self.prefetch_chunks:
            produced = self._prefetcher = Prefetcher(produced, self.prefetch_chunks, name="llm-source-prefetch")
        self._chunks = self._consume_chunks(produced)

    def _produce_chunks(self, first_chunk: int) -> Iterator[_Chunk]:
        """Forward passes, one per ``store_batch_size_prompts`` prompts (in the prefetch thread if on)."""
        positions = torch.arange(self.chunk_size)
        for chunk in itertools.count(first_chunk):
            tokens = self.stream.next_prompts(self.cfg.store_batch_size_prompts)
            activations = self.activations(tokens)
            origins = chunk * self.chunk_size + positions
            keep = self._kept_positions(tokens)
            if keep is not None:
                activations, origins = activations[keep.to(activations.device)], origins[keep]
            yield _Chunk(chunk, tokens, activations, origins, self.stream.position)

    def _consume_chunks(self, produced: Iterator[_Chunk]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(activations, origins)`` for the buffer, recording what a saved state must reproduce.

        Only chunks the buffer has taken count: with prefetching on, the stream runs ahead,
        and the chunks still queued are produced again after a resume.
        """
        for chunk in produced:
            self._chunk_tokens[chunk.index] = chunk.tokens
            self._consumed_position = chunk.position_after
            self._next_chunk = chunk.index + 1
            yield chunk.activations, chunk.origins

    def _stop_prefetching(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    @torch.no_grad()
    def activations(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[batch · kept positions, d_in]`` float32 on ``device`` for prompts ``tokens [batch, context]``.

        Every position after ``seqpos_slice`` is included (special tokens too); the hooks'
        activations sit side by side, in the order of ``hook_names``.
        """
        with self._model_lock, torch.autocast(device_type=self.model.input_device.type, dtype=torch.bfloat16,
                                              enabled=self.cfg.autocast_lm):
            raws = self.model.activations(tokens.to(self.model.input_device), self.hook_names)
        columns = [self._rows(raw) for raw in raws]
        joined = columns[0] if len(columns) == 1 else torch.cat(columns, dim=-1)
        return joined.to(self.buffer_device)

    def _rows(self, raw: torch.Tensor) -> torch.Tensor:
        """One hook's ``[batch, pos, ...]`` activation as float32 rows ``[batch · kept positions, width]``."""
        cfg = self.cfg
        raw = raw[:, slice(*cfg.seqpos_slice)]
        if raw.ndim == 4:
            raw = raw[:, :, cfg.hook_head_index] if cfg.hook_head_index is not None else raw.flatten(2)
        return raw.reshape(-1, raw.shape[-1]).float()

    def _kept_positions(self, tokens: torch.Tensor) -> torch.Tensor | None:
        if self.excluded_tokens is None:
            return None
        positions = tokens[:, slice(*self.cfg.seqpos_slice)].reshape(-1)
        return ~torch.isin(positions, self.excluded_tokens)

    def _forget_unused_chunks(self) -> None:
        needed = torch.cat([self.buffer.origins, self.buffer.carry_origins])
        live = {int(chunk) for chunk in torch.unique(needed[needed != EMPTY] // self.chunk_size)}
        self._chunk_tokens = {chunk: tokens for chunk, tokens in self._chunk_tokens.items() if chunk in live}

    def _recompute_buffer(self) -> None:
        """Run the saved chunks through the model again and put each activation back in its slot."""
        buffer = self.buffer
        slot_chunks = torch.where(buffer.origins == EMPTY, EMPTY, buffer.origins // self.chunk_size)
        carry_chunks = buffer.carry_origins // self.chunk_size
        carry = torch.zeros(len(buffer.carry_origins), self._d_in, device=self.buffer_device)
        for chunk, tokens in sorted(self._chunk_tokens.items()):
            activations = self.activations(tokens)
            slots = torch.nonzero(slot_chunks == chunk).flatten()
            if len(slots):
                positions = (buffer.origins[slots] % self.chunk_size).to(activations.device)
                buffer.slots[slots.to(self.buffer_device)] = activations[positions]
            in_carry = torch.nonzero(carry_chunks == chunk).flatten()
            if len(in_carry):
                positions = (buffer.carry_origins[in_carry] % self.chunk_size).to(activations.device)
                carry[in_carry.to(self.buffer_device)] = activations[positions]
        if len(buffer.carry_origins):
            buffer.carry_activations = carry

    # -- setup ----------------------------------------------------------------------------
    def _check_context_size(self) -> None:
        n_ctx = self.model.n_ctx
        if n_ctx is not None and self.cfg.context_size > n_ctx:
            raise ConfigError(f"context_size={self.cfg.context_size} is longer than the model's context window "
                              f"(n_ctx={n_ctx} for {self.model.name}); set context_size to at most {n_ctx}")

    def _probe(self) -> dict[str, int]:
        """Each hook's width, from the shapes of a two-token forward pass."""
        probe = torch.zeros(1, min(2, self.cfg.context_size), dtype=torch.long)
        with torch.no_grad():
            raws = self.model.activations(probe.to(self.model.input_device), self.hook_names)
        return {name: self._width(name, tuple(raw.shape[2:])) for name, raw in zip(self.hook_names, raws)}

    def _width(self, hook_name: str, shape: tuple[int, ...]) -> int:
        head_index = self.cfg.hook_head_index
        if head_index is not None:
            if len(shape) != 2:
                raise ConfigError(f"hook_head_index={head_index} needs a per-head hook (activations "
                                  f"[batch, pos, heads, d_head], like hook_z), but {hook_name!r} gives "
                                  f"[batch, pos, {', '.join(map(str, shape))}]")
            if head_index >= shape[0]:
                raise ConfigError(f"hook_head_index={head_index} but {hook_name!r} has {shape[0]} "
                                  f"heads (allowed: 0 to {shape[0] - 1})")
            return shape[1]
        if len(shape) not in (1, 2):
            raise ConfigError(f"hook {hook_name!r} gives activations of shape [batch, pos, "
                              f"{', '.join(map(str, shape))}]; expected [batch, pos, d] or [batch, pos, heads, d_head]")
        return shape[0] if len(shape) == 1 else shape[0] * shape[1]

    def _special_token(self, which: str, reason: str) -> int:
        tokenizer = self.model.tokenizer
        token = getattr(tokenizer, f"{which}_token_id", None) if tokenizer is not None else None
        if token is None:
            raise ConfigError(f"{reason} needs the tokenizer's {which} token, but "
                              f"{'there is no tokenizer' if tokenizer is None else 'it has none'}")
        return int(token)

    def _separator_token(self) -> int | None:
        separator = self.cfg.sequence_separator_token
        if separator is None or isinstance(separator, int):
            return separator
        return self._special_token(separator, f"sequence_separator_token={separator!r}")

    def _excluded_tokens(self) -> torch.Tensor | None:
        exclude = self.cfg.exclude_special_tokens
        if exclude is False:
            return None
        if exclude is True:
            tokenizer = self.model.tokenizer
            if tokenizer is None:
                raise ConfigError("exclude_special_tokens=True needs a tokenizer to know the special tokens; "
                                  "set tokenizer, or give the token ids as a list")
            ids = {getattr(tokenizer, name, None) for name in SPECIAL_TOKEN_ATTRIBUTES} - {None}
            return torch.tensor(sorted(ids), dtype=torch.long)
        return torch.tensor(list(exclude), dtype=torch.long)

    def _announce_epoch(self, epoch: int) -> None:
        """Warn once (a constant message is shown once per place), then note each pass when verbose."""
        warnings.warn("llm source: the dataset ran out and is read again from the start, so training sees "
                      "its documents more than once", stacklevel=1)
        if self.cfg.verbose:
            print(f"llm source: starting pass {epoch + 1} over the dataset", file=sys.stderr)
