"""Activations cached on disk as safetensors shards, and the writer that makes such a cache.

A cache is a folder::

    cache_info.json              {"format": "saecore-activation-cache", "d_in": 768,
                                  "dtype": "float32", "n_tokens": 3000000,
                                  "shards": [{"file": "shard_00000.safetensors", "n_tokens": 65536}, ...],
                                  "metadata": {"model_name": "gpt2", "hook_name": "blocks.6.hook_resid_post", ...},
                                  "streams": [{"name": "blocks.6.hook_resid_post", "width": 768,
                                               "metadata": {...}}, ...],
                                  "target_width": 768}
    shard_00000.safetensors      tensor "activations" [n_tokens, d_in]
    ...

``streams`` (optional) records the source's ``streams()`` and each one's
``stream_metadata``: a source that hooks several points of one forward pass serves rows
that are its streams side by side, and the cache keeps those rows whole, so the streams
stay aligned and a ``cached`` source reports the same streams as the source it was
written from. A stream of (input, target) pairs also records its ``target_width``.

``target_width`` (optional, 0 when absent) is set for a cache of (input, target) pairs,
written from a source that feeds transcoders: each row is ``[input | target]`` and its
last ``target_width`` columns are the target, so the pairs stay whole on disk and through
every shuffle, and the ``cached`` source serves them as the source did.

Every shard and every version of ``cache_info.json`` is written atomically, and the index
is rewritten after each shard, so a writer that dies leaves a readable cache of the shards
it finished.

The cached source also reads SAELens's layout, a Hugging Face dataset folder with one
activation column of ``[context_size, d_in]`` prompts (see ``hf_dataset_cache``): each of
its Arrow files is a shard, and the cache's metadata is its hook name and context size.

Reading never holds the whole cache in memory. Each epoch visits the shards in a fresh
random order, ``buffer_shards`` at a time: a group's rows are loaded together, shuffled
together and served before the next group is loaded. Rows therefore mix across
``buffer_shards`` shards, every row is served exactly once per epoch, and the position is
three integers (epoch, group, row) from which an exact resume is rebuilt.

In data-parallel training ``shard_for_rank(r, W)`` gives rank ``r`` the shard files
``r, r + W, …`` and shuffles them with a seed of its own, so the ranks read disjoint parts
of the cache that together cover it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from pydantic import Field, field_validator
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from saecore.dtypes import canonical_dtype_name, dtype_from_name
from saecore.errors import ConfigError, SAEFileError
from saecore.io.atomic import write_atomically, write_text_atomically
from saecore.sources.base import ActivationSource, SourceConfig
from saecore.sources.device_copy import batch_to_device
from saecore.sources.hf_dataset_cache import (
    HFDatasetCache,
    count_hf_rows,
    is_hf_dataset_folder,
    read_hf_activations,
    read_hf_dataset_cache,
)

CACHE_INFO_FILE = "cache_info.json"
CACHE_FORMAT = "saecore-activation-cache"
CACHE_FORMAT_VERSION = 1
TENSOR_NAME = "activations"
STORAGE_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ShardInfo:
    file: str
    n_tokens: int


@dataclass(frozen=True)
class StreamInfo:
    """One stream of the cached rows: its columns are the next ``width`` after the streams before it.

    ``target_width`` is the width of the target ending the stream's columns (0: inputs only).
    """

    name: str
    width: int
    metadata: dict[str, Any]
    target_width: int = 0


def source_streams(source: ActivationSource) -> tuple[StreamInfo, ...]:
    """The streams a cache of ``source``'s batches records, in column order."""
    return tuple(StreamInfo(name, width, source.stream_metadata(name), source.stream_target_width(name))
                 for name, width in source.streams().items())


def check_target_width(target_width: int, d_in: int) -> str | None:
    """What is wrong with ``target_width`` as the last columns of ``d_in``-wide rows (None: nothing)."""
    if not 0 <= target_width < d_in:
        return f"target_width={target_width} must be at least 0 and below d_in={d_in}, leaving room for the input"
    return None


def check_streams(streams: Sequence[StreamInfo], d_in: int) -> str | None:
    """What is wrong with ``streams`` as the columns of ``d_in``-wide rows (None: nothing)."""
    names = [stream.name for stream in streams]
    if len(set(names)) != len(names):
        return f"stream names repeat: {names}"
    if any(stream.width < 1 for stream in streams):
        return f"every stream needs a width of at least 1: {[stream.width for stream in streams]}"
    for stream in streams:
        if not 0 <= stream.target_width < stream.width:
            return (f"stream {stream.name!r} has target_width={stream.target_width}; it must be at least 0 and below "
                    f"the stream's width {stream.width}")
    total = sum(stream.width for stream in streams)
    if total != d_in:
        return f"the streams' widths {[stream.width for stream in streams]} add up to {total}, not d_in={d_in}"
    return None


def stream_json(stream: StreamInfo) -> dict[str, Any]:
    """One entry of ``cache_info.json``'s ``streams``; ``target_width`` only for a stream of pairs."""
    entry: dict[str, Any] = {"name": stream.name, "width": stream.width, "metadata": stream.metadata}
    if stream.target_width:
        entry["target_width"] = stream.target_width
    return entry


@dataclass(frozen=True)
class CacheInfo:
    """The parsed ``cache_info.json`` of a cache folder (``streams`` empty: one unnamed stream).

    ``target_width`` is the width of the target ending each row of a cache of pairs (0: inputs
    only). ``hf_dataset`` is set for a cache in SAELens's layout, whose shards are Arrow files.
    """

    d_in: int
    dtype: str
    shards: tuple[ShardInfo, ...]
    metadata: dict[str, Any]
    streams: tuple[StreamInfo, ...] = ()
    target_width: int = 0
    hf_dataset: HFDatasetCache | None = None

    @property
    def n_tokens(self) -> int:
        return sum(shard.n_tokens for shard in self.shards)

    def to_json(self) -> str:
        info: dict[str, Any] = {
            "format": CACHE_FORMAT,
            "version": CACHE_FORMAT_VERSION,
            "d_in": self.d_in,
            "dtype": self.dtype,
            "n_tokens": self.n_tokens,
            "shards": [{"file": s.file, "n_tokens": s.n_tokens} for s in self.shards],
            "metadata": self.metadata,
        }
        if self.streams:
            info["streams"] = [stream_json(s) for s in self.streams]
        if self.target_width:
            info["target_width"] = self.target_width
        return json.dumps(info, indent=2)


def read_cache_info(path: Path) -> CacheInfo:
    """Parse and check ``path/cache_info.json`` (or a SAELens-layout dataset's JSON files); SAEFileError names
    the file and the problem."""
    info_path = path / CACHE_INFO_FILE
    if not info_path.is_file() and is_hf_dataset_folder(path):
        return _read_hf_cache_info(path)
    if not info_path.is_file():
        raise SAEFileError(f"{info_path}: not found; is {path} a cache written by CachedActivationsWriter or by "
                           "SAELens's CacheActivationsRunner?")
    try:
        raw = json.loads(info_path.read_text())
        shards = tuple(ShardInfo(str(s["file"]), int(s["n_tokens"])) for s in raw["shards"])
        streams = tuple(StreamInfo(str(s["name"]), int(s["width"]), dict(s.get("metadata") or {}),
                                   int(s.get("target_width") or 0))
                        for s in raw.get("streams") or ())
        info = CacheInfo(int(raw["d_in"]), canonical_dtype_name(raw["dtype"]), shards, dict(raw.get("metadata") or {}),
                         streams, int(raw.get("target_width") or 0))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        problem = f"{type(error).__name__}: {error}"
        raise SAEFileError(f"{info_path}: not a valid activation-cache index ({problem})") from None
    if raw.get("format") != CACHE_FORMAT:
        raise SAEFileError(f"{info_path}: 'format' is {raw.get('format')!r}, expected {CACHE_FORMAT!r}")
    if not info.shards:
        raise SAEFileError(f"{info_path}: the cache has no shards")
    problem = check_streams(info.streams, info.d_in) if info.streams else None
    if problem is not None:
        raise SAEFileError(f"{info_path}: 'streams' do not describe the rows: {problem}")
    problem = check_target_width(info.target_width, info.d_in)
    if problem is not None:
        raise SAEFileError(f"{info_path}: {problem}")
    return info


def _read_hf_cache_info(path: Path) -> CacheInfo:
    """A SAELens-layout cache as shards of ``prompts × context_size`` activations, one per Arrow file."""
    cache = read_hf_dataset_cache(path)
    shards = []
    for file in cache.files:
        if not (path / file).is_file():
            raise SAEFileError(f"{path / file}: data file listed in state.json is missing")
        shards.append(ShardInfo(file, count_hf_rows(path / file) * cache.context_size))
    metadata = {"hook_name": cache.column, "context_size": cache.context_size}
    return CacheInfo(cache.d_in, cache.dtype, tuple(shards), metadata, hf_dataset=cache)


class CachedActivationsWriter:
    """Appends activation batches to a cache folder, one safetensors shard per ``shard_size_tokens`` rows.

    Use as a context manager (or call ``close()``) so the last partial shard is written::

        with CachedActivationsWriter("acts/", d_in=768, metadata={"model_name": "gpt2"}) as writer:
            for batch in batches:
                writer.append(batch)

    ``streams`` (see :func:`source_streams`) names the column blocks of rows that hold
    several streams side by side; ``target_width`` (a source's ``target_width``) marks rows
    that are (input, target) pairs.
    """

    def __init__(
        self,
        path: str | Path,
        d_in: int,
        *,
        dtype: str = "float32",
        shard_size_tokens: int = 65_536,
        metadata: dict[str, Any] | None = None,
        streams: Sequence[StreamInfo] = (),
        target_width: int = 0,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.d_in = d_in
        self.dtype = canonical_dtype_name(dtype)
        if self.dtype not in STORAGE_DTYPES:
            raise ConfigError(f"dtype={dtype!r} cannot be cached; allowed: {', '.join(STORAGE_DTYPES)}")
        if shard_size_tokens < 1:
            raise ConfigError(f"shard_size_tokens={shard_size_tokens} must be at least 1")
        self.shard_size_tokens = shard_size_tokens
        self.metadata = dict(metadata or {})
        problem = check_streams(streams, d_in) if streams else None
        if problem is not None:
            raise ConfigError(f"streams: {problem}")
        self.streams = tuple(streams)
        problem = check_target_width(target_width, d_in)
        if problem is not None:
            raise ConfigError(problem)
        self.target_width = target_width
        self._prepare_folder(overwrite)
        self._shards: list[ShardInfo] = []
        self._pending: list[torch.Tensor] = []
        self._pending_rows = 0
        self._closed = False

    def _prepare_folder(self, overwrite: bool) -> None:
        info_path = self.path / CACHE_INFO_FILE
        if info_path.exists():
            if not overwrite:
                raise SAEFileError(f"{self.path}: already holds an activation cache; pass overwrite=True to replace it")
            for shard in read_cache_info(self.path).shards:
                (self.path / shard.file).unlink(missing_ok=True)
            info_path.unlink()
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def n_tokens(self) -> int:
        """Rows appended so far, flushed or not."""
        return sum(shard.n_tokens for shard in self._shards) + self._pending_rows

    def append(self, batch: torch.Tensor) -> None:
        """Add rows ``[n, d_in]``; full shards are written as soon as they fill."""
        if self._closed:
            raise SAEFileError(f"{self.path}: the cache writer is closed")
        if batch.ndim != 2 or batch.shape[1] != self.d_in:
            raise ConfigError(f"cache batch has shape {list(batch.shape)}; expected [n, d_in={self.d_in}]")
        rows = batch.detach().to("cpu", dtype_from_name(self.dtype))
        self._pending.append(rows)
        self._pending_rows += rows.shape[0]
        if self._pending_rows >= self.shard_size_tokens:
            joined = torch.cat(self._pending)
            n_full = joined.shape[0] // self.shard_size_tokens * self.shard_size_tokens
            for start in range(0, n_full, self.shard_size_tokens):
                self._write_shard(joined[start:start + self.shard_size_tokens])
            rest = joined[n_full:]
            self._pending = [rest] if rest.shape[0] else []
            self._pending_rows = rest.shape[0]

    def _write_shard(self, rows: torch.Tensor) -> None:
        name = f"shard_{len(self._shards):05d}.safetensors"
        tensors = {TENSOR_NAME: rows.contiguous()}
        write_atomically(self.path / name, lambda tmp: save_file(tensors, str(tmp)))
        self._shards.append(ShardInfo(name, rows.shape[0]))
        self._write_info()

    def _write_info(self) -> None:
        info = CacheInfo(self.d_in, self.dtype, tuple(self._shards), self.metadata, self.streams, self.target_width)
        write_text_atomically(self.path / CACHE_INFO_FILE, info.to_json())

    def close(self) -> None:
        """Write the last partial shard and the final index."""
        if self._closed:
            return
        if self._pending_rows:
            self._write_shard(torch.cat(self._pending))
            self._pending, self._pending_rows = [], 0
        if not self._shards:
            raise SAEFileError(f"{self.path}: no activations were appended, so no cache was written")
        self._closed = True

    def __enter__(self) -> CachedActivationsWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()


class CachedSourceConfig(SourceConfig):
    """Where the cache is and how its rows are mixed."""

    path: Path = Field(description="Folder holding cache_info.json and the shards.")
    shuffle: bool = Field(default=True, description="Shuffle shard order each epoch and rows within each group.")
    buffer_shards: int = Field(default=2, ge=1, description="Shards loaded (and mixed) together; bounds memory.")

    @field_validator("path", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        return Path(value).expanduser() if isinstance(value, (str, Path)) else value


class CachedSource(ActivationSource):
    """Streams a cache folder written by :class:`CachedActivationsWriter`."""

    cfg: CachedSourceConfig

    def __init__(self, cfg: CachedSourceConfig, *, seed: int = 42, device: str = "cpu") -> None:
        super().__init__(cfg, seed=seed, device=device)
        self.info = read_cache_info(cfg.path)
        for shard in self.info.shards:
            self._check_shard_header(shard)
        self._rank, self._world_size = 0, 1
        self._shard_ids = list(range(len(self.info.shards)))
        self._epoch = 0
        self._group = 0
        self._row = 0
        self._order = self._shard_order(0)
        self._buffer: torch.Tensor | None = None
        self.peak_buffered_rows = 0

    # -- geometry --------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.info.d_in

    @property
    def target_width(self) -> int:
        """The width of the target ending each row of a cache of pairs; 0 for a cache of inputs."""
        return self.info.target_width

    @property
    def n_tokens(self) -> int:
        """Rows this source serves per epoch: the whole cache, or this rank's shards."""
        return sum(self.info.shards[i].n_tokens for i in self._shard_ids)

    @property
    def buffer_capacity_rows(self) -> int:
        """The most rows the buffer can hold: ``buffer_shards`` of the largest shards read."""
        sizes = sorted((self.info.shards[i].n_tokens for i in self._shard_ids), reverse=True)
        return sum(sizes[: self.cfg.buffer_shards])

    def streams(self) -> dict[str, int]:
        """The streams recorded when the cache was written (one unnamed stream for older caches)."""
        if not self.info.streams:
            return super().streams()
        return {stream.name: stream.width for stream in self.info.streams}

    def stream_metadata(self, stream: str) -> dict[str, Any]:
        if not self.info.streams:
            return super().stream_metadata(stream)
        return dict(self._stream_info(stream).metadata)

    def stream_target_width(self, stream: str) -> int:
        if not self.info.streams:
            return super().stream_target_width(stream)
        return self._stream_info(stream).target_width

    def _stream_info(self, stream: str) -> StreamInfo:
        for info in self.info.streams:
            if info.name == stream:
                return info
        names = ", ".join(info.name for info in self.info.streams)
        raise ConfigError(f"stream {stream!r} is not in the cache at {self.cfg.path}; its streams are: {names}")

    @property
    def buffered_rows(self) -> int:
        """Rows held in memory right now (the loaded group, served or not)."""
        return 0 if self._buffer is None else self._buffer.shape[0]

    def check_batch_size(self, batch_size: int) -> None:
        limit = min(self.buffer_capacity_rows, self.n_tokens)
        if batch_size > limit:
            raise ConfigError(
                f"train_batch_size_tokens={batch_size} is larger than the cached source's shuffle buffer "
                f"({limit} rows: buffer_shards={self.cfg.buffer_shards} shards of the {self.n_tokens} rows read "
                f"from the cache at {self.cfg.path}); raise buffer_shards, write larger shards, or lower "
                "train_batch_size_tokens"
            )

    def shard_for_rank(self, rank: int, world_size: int) -> bool:
        """Read only shard files ``rank, rank + world_size, …``, shuffled with this rank's own seed.

        False (every rank then reads the whole cache and keeps its rows of each batch) when
        the cache has fewer shards than there are ranks.
        """
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank={rank} must be between 0 and world_size - 1 = {world_size - 1}")
        if self._epoch or self._group or self._row or self._buffer is not None:
            raise ConfigError("shard_for_rank must be called before the cached source serves its first batch")
        if len(self.info.shards) < world_size:
            return False
        self._rank, self._world_size = rank, world_size
        self._shard_ids = list(range(rank, len(self.info.shards), world_size))
        self._order = self._shard_order(0)
        return True

    # -- serving ---------------------------------------------------------------------------
    def next_batch(self, batch_size: int) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        needed = batch_size
        while needed:
            buffer = self._ensure_buffer()
            take = min(needed, buffer.shape[0] - self._row)
            part = buffer[self._row:self._row + take]
            self._row += take
            needed -= take
            if self._row == buffer.shape[0]:
                # Copy the tail out before the group is dropped, so only one group is ever resident.
                parts.append(part.clone())
                self._advance_group()
            else:
                parts.append(part)
        # cat copies: the batch is never a view that would keep the whole group alive after it is dropped.
        return batch_to_device(torch.cat(parts), self.device, torch.float32)

    def _ensure_buffer(self) -> torch.Tensor:
        if self._buffer is None:
            if self._group * self.cfg.buffer_shards >= len(self._order):
                self._start_next_epoch()
            self._buffer = self._load_group(self._epoch, self._group)
            self.peak_buffered_rows = max(self.peak_buffered_rows, self._buffer.shape[0])
        return self._buffer

    def _advance_group(self) -> None:
        self._buffer = None
        self._row = 0
        self._group += 1

    def _start_next_epoch(self) -> None:
        """Wrap around, only once a row beyond the last one is actually asked for."""
        self._epoch += 1
        self._group = 0
        self._order = self._shard_order(self._epoch)
        warnings.warn(
            f"cached activations at {self.cfg.path}: all {self.n_tokens} rows have been served; "
            "starting another epoch, so rows will repeat (write a larger cache to avoid this)",
            stacklevel=4,
        )

    def _shard_order(self, epoch: int) -> list[int]:
        """The shards read (by index into the cache's list), in this epoch's order."""
        if not self.cfg.shuffle:
            return list(self._shard_ids)
        generator = torch.Generator().manual_seed(self._seed("order", epoch))
        return [self._shard_ids[i] for i in torch.randperm(len(self._shard_ids), generator=generator).tolist()]

    def _seed(self, *parts: object) -> int:
        """The seed of one shuffle; a sharded rank's differ from every other rank's."""
        if self._world_size == 1:
            return derive_seed(self.seed, *parts)
        return derive_seed(self.seed, "rank", self._rank, self._world_size, *parts)

    def _load_group(self, epoch: int, group: int) -> torch.Tensor:
        per_group = self.cfg.buffer_shards
        indices = self._order[group * per_group:(group + 1) * per_group]
        rows = torch.cat([self._load_shard(self.info.shards[i]) for i in indices])
        if not self.cfg.shuffle:
            return rows
        generator = torch.Generator().manual_seed(self._seed("rows", epoch, group))
        return rows[torch.randperm(rows.shape[0], generator=generator)]

    def _load_shard(self, shard: ShardInfo) -> torch.Tensor:
        file = self.cfg.path / shard.file
        if self.info.hf_dataset is not None:
            return read_hf_activations(file, self.info.hf_dataset)
        try:
            tensors = load_file(str(file))
        except Exception as error:
            raise SAEFileError(f"{file}: cannot read activation shard ({type(error).__name__}: {error})") from None
        rows = tensors.get(TENSOR_NAME)
        if rows is None or list(rows.shape) != [shard.n_tokens, self.info.d_in]:
            found = "no 'activations' tensor" if rows is None else f"shape {list(rows.shape)}"
            expected = [shard.n_tokens, self.info.d_in]
            raise SAEFileError(f"{file}: {found}; {CACHE_INFO_FILE} promises 'activations' of shape {expected}")
        return rows

    def _check_shard_header(self, shard: ShardInfo) -> None:
        """Read only the header, so a missing or truncated shard is reported before training starts."""
        if self.info.hf_dataset is not None:  # read_cache_info has already counted each file's rows
            return
        file = self.cfg.path / shard.file
        if not file.is_file():
            raise SAEFileError(f"{file}: shard listed in {CACHE_INFO_FILE} is missing")
        try:
            with safe_open(str(file), framework="pt") as handle:
                shape = handle.get_slice(TENSOR_NAME).get_shape() if TENSOR_NAME in handle.keys() else None
        except Exception as error:
            raise SAEFileError(f"{file}: not a readable safetensors shard ({type(error).__name__}: {error})") from None
        expected = [shard.n_tokens, self.info.d_in]
        if shape != expected:
            raise SAEFileError(f"{file}: 'activations' has shape {shape}; {CACHE_INFO_FILE} promises {expected}")

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "group": self._group, "row": self._row, "seed": self.seed,
                "shard_order": list(self._order), "rank": self._rank, "world_size": self._world_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["seed"]) != self.seed:
            raise ConfigError(
                f"cached source: the saved position was made with seed={state['seed']}, this run has "
                f"seed={self.seed}; resume with the same seed"
            )
        rank, world_size = int(state.get("rank", 0)), int(state.get("world_size", 1))
        if (rank, world_size) != (self._rank, self._world_size):
            raise ConfigError(
                f"cached source: the saved position is rank {rank}'s of {world_size} ranks, this source reads "
                f"rank {self._rank}'s share of {self._world_size}; resume with the same number of ranks"
            )
        order = self._shard_order(int(state["epoch"]))
        if order != list(state["shard_order"]):
            raise ConfigError(
                f"cached source: the cache at {self.cfg.path} or its shuffle setting changed since the position "
                "was saved; resume with the same cache and the same shuffle setting"
            )
        self._epoch, self._group, self._row = int(state["epoch"]), int(state["group"]), int(state["row"])
        self._order = order
        self._buffer = None

    def sae_metadata(self) -> dict[str, Any]:
        return dict(self.info.metadata)

    def close(self) -> None:
        self._buffer = None


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from several values, so each epoch (and group) gets its own random stream."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
