"""One activation stream, drawn once, handed to every SAE of a sweep.

Each SAE of a sweep runs its own unchanged :class:`SAETrainer`, which asks its batch
handout for training batches, evaluation batches and whole global batches in a fixed
order. Every SAE of a sweep makes the same requests in the same order (the sweep config
makes the settings that decide them equal), so a tee suffices: the first SAE to make
its k-th request draws from the real handout, the others get the same tensor, and it is
dropped once the last SAE has read it. The SAEs step in lockstep, so at most one step's
draws (one batch, or the batches of one evaluation) are held at a time.

An SAE reads only the columns of its stream (see ``ActivationSource.streams``): a
source that hooks several layers of a model in one forward pass feeds an SAE per layer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from saecore.distributed.sharding import WholeBatches


@dataclass
class _Draw:
    kind: str
    size: int
    batch: torch.Tensor
    unread: int


class SharedBatches:
    """The tee over ``handout`` for ``n_readers`` SAEs; ``view(i, columns)`` is reader i's handout."""

    def __init__(self, handout: WholeBatches, n_readers: int) -> None:
        self.handout = handout
        self.n_readers = n_readers
        self._draws: deque[_Draw] = deque()
        self._first_index = 0
        self._cursors = [0] * n_readers

    def view(self, reader: int, columns: slice | None) -> StreamView:
        return StreamView(self, reader, columns)

    @property
    def held_batches(self) -> int:
        """Draws some SAE has not read yet (bounded by one step's draws in lockstep)."""
        return len(self._draws)

    def draw(self, reader: int, kind: str, size: int) -> torch.Tensor:
        """Reader ``reader``'s next batch: a fresh draw if it is first, else the one the first reader got."""
        index = self._cursors[reader]
        offset = index - self._first_index
        if offset == len(self._draws):
            fresh = self.handout.local_batch(size) if kind == "local" else self.handout.global_batch(size)
            self._draws.append(_Draw(kind, size, fresh, self.n_readers))
        draw = self._draws[offset]
        if (draw.kind, draw.size) != (kind, size):
            raise RuntimeError(
                f"the SAEs of a sweep must draw batches in the same order, but SAE {reader} asked for a {kind} "
                f"batch of {size} where another asked for a {draw.kind} batch of {draw.size}; this is a bug in "
                "saecore (the sweep config should have made their settings agree)"
            )
        self._cursors[reader] = index + 1
        draw.unread -= 1
        while self._draws and self._draws[0].unread == 0:
            self._draws.popleft()
            self._first_index += 1
        return draw.batch

    def reset(self) -> None:
        """Forget held draws (before restoring a checkpoint, where every SAE restarts at one position)."""
        self._draws.clear()
        self._first_index = 0
        self._cursors = [0] * self.n_readers


class StreamView(WholeBatches):
    """One SAE's handout: the shared draws, cut to the columns of its stream."""

    def __init__(self, shared: SharedBatches, reader: int, columns: slice | None) -> None:
        super().__init__(shared.handout.source, shared.handout.context)
        self.shared = shared
        self.reader = reader
        self.columns = columns
        self.mode = shared.handout.mode
        self.per_rank_state = shared.handout.per_rank_state

    def _columns_of(self, batch: torch.Tensor) -> torch.Tensor:
        return batch if self.columns is None else batch[:, self.columns].contiguous()

    def local_batch(self, global_size: int) -> torch.Tensor:
        return self._columns_of(self.shared.draw(self.reader, "local", global_size))

    def global_batch(self, global_size: int) -> torch.Tensor:
        return self._columns_of(self.shared.draw(self.reader, "global", global_size))

    def source_metrics(self, sae: Any, scaling_factor: float | None) -> dict[str, float]:
        return self.shared.handout.source_metrics(sae, scaling_factor)

    def source_state_to_save(self) -> dict[str, Any] | None:
        return self.shared.handout.source_state_to_save()

    def restore_source_state(self, state: dict[str, Any], written_by: Mapping[str, Any] | None) -> None:
        self.shared.reset()
        self.shared.handout.restore_source_state(state, written_by)
