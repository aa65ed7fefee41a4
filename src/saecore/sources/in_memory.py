"""Activations handed over from Python: one tensor, or any iterable of tensors.

This is the source for people with their own model (a vision network, a protein model,
anything with a forward hook): capture activations however you like, reshape them to
``[n, d_in]`` and train. The trainer neither knows nor cares where they came from::

    source = TensorSource(TensorSourceConfig(data=acts))                 # acts: [N, d_in]
    source = TensorSource(TensorSourceConfig(data=chunks_from_a_loop()))  # yields [n_i, d_in]

For a transcoder, give the targets beside the inputs: ``target`` is a tensor ``[N, d_out]``
whose rows belong to ``data``'s, or the iterable yields ``(inputs [n_i, d_in], targets
[n_i, d_out])`` pairs. Each batch row is then the input followed by its target::

    source = TensorSource(TensorSourceConfig(data=mlp_in, target=mlp_out))

A tensor is served in a fresh seeded random order each epoch. An iterable is served in
the order it yields rows, re-chunked to the batch size; if ``iter(data)`` gives a new
iterator each time (a list, a dataset object) it is read again when it runs out, while a
one-shot iterator (a generator) that runs out is an error.

Resuming (``load_state_dict``): a tensor resumes exactly. An iterable resumes by
*skipping* the rows already served: a re-iterable is read again from its start and the
served rows are skipped; a one-shot iterator must be a fresh iterator over the same
stream, given to a source that has served nothing yet, and the served rows are skipped
from it. Either way resume is exact only if the data yields the same rows as before.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from pydantic import Field, ValidationInfo, field_serializer, field_validator

from saecore.errors import ConfigError
from saecore.sources.base import ActivationSource, SourceConfig
from saecore.sources.cached import derive_seed
from saecore.sources.device_copy import batch_to_device

_WRAP_WARNING = "{what} ran out of rows; starting another pass over it, so rows will repeat"


class TensorSourceConfig(SourceConfig):
    """In-memory activations: ``data`` is a tensor ``[N, d_in]`` or an iterable of tensors ``[n_i, d_in]``."""

    data: Any = Field(description="A tensor [N, d_in], or an iterable/iterator yielding tensors [n_i, d_in].")
    target: Any = Field(
        default=None,
        description="For transcoders: a tensor [N, d_out] of the targets of data's rows (data must be a tensor).",
    )
    shuffle: bool = Field(default=True, description="Shuffle a tensor's rows each epoch (iterables keep their order).")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Facts for the saved SAE's metadata, e.g. model_name and hook_name."
    )

    @field_validator("data")
    @classmethod
    def _tensor_or_iterable(cls, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            _check_rows(value, "data", d_in=None)
            if value.shape[0] == 0:
                raise ValueError("the tensor has no rows")
            return value
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
            raise ValueError(f"expected a tensor [N, d_in] or an iterable of tensors, got {type(value).__name__}")
        return value

    @field_validator("target")
    @classmethod
    def _target_rows(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        _check_rows(value, "target", d_in=None)
        data = info.data.get("data")
        if not isinstance(data, torch.Tensor):
            raise ValueError("target needs data to be a tensor; an iterable yields (inputs, targets) pairs instead")
        if value.shape[0] != data.shape[0]:
            raise ValueError(f"target has {value.shape[0]} rows but data has {data.shape[0]}; each row of data "
                             "needs its target")
        return value

    @field_serializer("data", "target", when_used="json")
    def _describe(self, value: Any) -> str | None:
        """In-memory data cannot go into runner_cfg.json; record what it was instead."""
        if value is None:
            return None
        if isinstance(value, torch.Tensor):
            return f"<tensor {list(value.shape)} {str(value.dtype).removeprefix('torch.')}>"
        return f"<{type(value).__name__} of tensors>"


class TensorSource(ActivationSource):
    """Serves a :class:`TensorSourceConfig`'s tensor or iterable (see the module docstring for resume)."""

    cfg: TensorSourceConfig

    def __init__(self, cfg: TensorSourceConfig, *, seed: int = 42, device: str = "cpu") -> None:
        super().__init__(cfg, seed=seed, device=device)
        data = cfg.data
        self._reader: _ShuffledTensor | _Rechunker = (
            _ShuffledTensor(data, seed, cfg.shuffle, cfg.target) if isinstance(data, torch.Tensor)
            else _Rechunker(data)
        )

    @property
    def d_in(self) -> int:
        return self._reader.d_in

    @property
    def target_width(self) -> int:
        return self._reader.target_width

    def next_batch(self, batch_size: int) -> torch.Tensor:
        return batch_to_device(self._reader.take(batch_size), self.device, torch.float32)

    def check_batch_size(self, batch_size: int) -> None:
        if isinstance(self._reader, _ShuffledTensor) and batch_size > self._reader.n_rows:
            raise ConfigError(
                f"train_batch_size_tokens={batch_size} is larger than the {self._reader.n_rows} rows of "
                "TensorSourceConfig.data; lower train_batch_size_tokens or pass more activations"
            )

    def state_dict(self) -> dict[str, Any]:
        return self._reader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reader.load_state_dict(state)

    def sae_metadata(self) -> dict[str, Any]:
        return dict(self.cfg.metadata)


class _ShuffledTensor:
    """A tensor served epoch by epoch, each epoch in its own seeded permutation."""

    def __init__(self, data: torch.Tensor, seed: int, shuffle: bool, target: torch.Tensor | None = None) -> None:
        self.data = data
        self.target = target
        self.seed = seed
        self.shuffle = shuffle
        self.target_width = 0 if target is None else target.shape[1]
        self.d_in = data.shape[1] + self.target_width
        self.n_rows = data.shape[0]
        self.epoch = 0
        self.offset = 0
        self.order = self._order(0)

    def _order(self, epoch: int) -> torch.Tensor | None:
        if not self.shuffle:
            return None
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        return torch.randperm(self.n_rows, generator=generator).to(self.data.device)

    def take(self, n: int) -> torch.Tensor:
        parts = []
        while n:
            if self.offset == self.n_rows:
                self.epoch += 1
                self.offset = 0
                self.order = self._order(self.epoch)
                warnings.warn(_WRAP_WARNING.format(what="TensorSourceConfig.data"), stacklevel=4)
            count = min(n, self.n_rows - self.offset)
            rows: slice | torch.Tensor = (
                slice(self.offset, self.offset + count) if self.order is None
                else self.order[self.offset:self.offset + count]
            )
            parts.append(self.data[rows] if self.target is None else torch.cat([self.data[rows], self.target[rows]], 1))
            self.offset += count
            n -= count
        return torch.cat(parts)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset, "n_rows": self.n_rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["n_rows"]) != self.n_rows:
            raise ConfigError(
                f"tensor source: the saved position is for {state['n_rows']} rows but TensorSourceConfig.data "
                f"has {self.n_rows}; resume with the same activations"
            )
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self.order = self._order(self.epoch)


class _Rechunker:
    """Rows of an iterable of tensors, cut into batches of any size.

    The position is ``(pass, rows served in that pass)``, which is all a resume needs.
    """

    def __init__(self, iterable: Iterable[Any]) -> None:
        self.iterable = iterable
        self.one_shot = iter(iterable) is iterable
        self.iterator: Iterator[Any] = iter(iterable)
        self.iter_pass = 0
        self.chunks_read = 0
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.pending_rows = 0
        self.served_pass = 0
        self.served_offset = 0
        self.target_width = 0
        first = self._pull()
        if first is None:
            raise ConfigError("TensorSourceConfig.data: the iterable yielded no rows")
        self.d_in = first.shape[1]
        self._push(first)

    def _pull(self) -> torch.Tensor | None:
        """The next non-empty chunk of the current pass, or None when the pass is over."""
        for item in self.iterator:
            self.chunks_read += 1
            chunk = self._rows_of(item)
            _check_rows(chunk, f"data (chunk {self.chunks_read})", getattr(self, "d_in", None), error=ConfigError)
            if chunk.shape[0]:
                return chunk
        return None

    def _rows_of(self, item: Any) -> Any:
        """A chunk's rows: the tensor itself, or an (inputs, targets) pair joined side by side."""
        if not isinstance(item, tuple):
            if self.target_width:
                raise ConfigError(f"TensorSourceConfig.data (chunk {self.chunks_read}): earlier chunks were "
                                  "(inputs, targets) pairs, this one is not")
            return item
        where = f"data (chunk {self.chunks_read})"
        if len(item) != 2:
            raise ConfigError(f"TensorSourceConfig.{where}: expected an (inputs, targets) pair, got {len(item)} items")
        inputs, targets = item
        _check_rows(inputs, f"{where} inputs", None, error=ConfigError)
        _check_rows(targets, f"{where} targets", None, error=ConfigError)
        if inputs.shape[0] != targets.shape[0]:
            raise ConfigError(f"TensorSourceConfig.{where}: {inputs.shape[0]} inputs but {targets.shape[0]} targets; "
                              "each input row needs its target")
        if self.chunks_read > 1 and targets.shape[1] != self.target_width:
            raise ConfigError(f"TensorSourceConfig.{where}: targets have d_out={targets.shape[1]}, but earlier "
                              f"chunks had d_out={self.target_width}")
        self.target_width = targets.shape[1]
        return torch.cat([inputs, targets], 1)

    def _push(self, chunk: torch.Tensor) -> None:
        self.pending.append((self.iter_pass, chunk))
        self.pending_rows += chunk.shape[0]

    def _fill(self, n: int) -> None:
        while self.pending_rows < n:
            chunk = self._pull()
            if chunk is None:
                self._start_next_pass()
                continue
            self._push(chunk)

    def _start_next_pass(self) -> None:
        if self.one_shot:
            raise ConfigError(
                f"TensorSourceConfig.data: the iterator ran out after {self.served_offset + self.pending_rows} rows; "
                "lower training_tokens, or pass a list or other re-iterable object that can be read again"
            )
        warnings.warn(_WRAP_WARNING.format(what="TensorSourceConfig.data"), stacklevel=6)
        self.iter_pass += 1
        self.chunks_read = 0
        self.iterator = iter(self.iterable)
        first = self._pull()
        if first is None:
            raise ConfigError("TensorSourceConfig.data: the iterable yielded no rows when read again")
        self._push(first)

    def take(self, n: int) -> torch.Tensor:
        self._fill(n)
        parts = []
        while n:
            chunk_pass, chunk = self.pending[0]
            count = min(n, chunk.shape[0])
            parts.append(chunk[:count])
            if count == chunk.shape[0]:
                self.pending.pop(0)
            else:
                self.pending[0] = (chunk_pass, chunk[count:])
            if chunk_pass != self.served_pass:
                self.served_pass, self.served_offset = chunk_pass, 0
            self.served_offset += count
            self.pending_rows -= count
            n -= count
        return torch.cat(parts)

    def state_dict(self) -> dict[str, Any]:
        return {"pass": self.served_pass, "rows_into_pass": self.served_offset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        target_pass, skip = int(state["pass"]), int(state["rows_into_pass"])
        if self.one_shot:
            if self.served_pass or self.served_offset or target_pass:
                raise ConfigError(
                    "TensorSourceConfig.data is a one-shot iterator: resuming needs a fresh iterator over the "
                    "same stream, given to a source that has served nothing yet (the served rows are skipped)"
                )
        else:
            self.iterator = iter(self.iterable)
            self.iter_pass, self.chunks_read = target_pass, 0
            self.pending, self.pending_rows = [], 0
        self.served_pass, self.served_offset = target_pass, 0
        if skip:
            self.take(skip)


def _check_rows(value: Any, what: str, d_in: int | None, error: type[Exception] = ValueError) -> None:
    if not isinstance(value, torch.Tensor):
        raise error(f"TensorSourceConfig.{what}: expected a tensor [n, d_in], got {type(value).__name__}")
    if value.ndim != 2 or not value.is_floating_point():
        raise error(
            f"TensorSourceConfig.{what}: expected a 2-D floating tensor [n, d_in], got shape "
            f"{list(value.shape)} of {value.dtype}; reshape e.g. [B, C, H, W] to [B*H*W, C] first"
        )
    if d_in is not None and value.shape[1] != d_in:
        raise error(f"TensorSourceConfig.{what}: has d_in={value.shape[1]}, but earlier rows had d_in={d_in}")
