"""The shuffling buffer: a fixed pool of activation slots, served in random order.

Activations from consecutive prompts are strongly correlated, so batches are drawn from
a large pool. Each cycle the pool's slots are put in a random order and batches are
served along it until only ``mixing_fraction`` of the pool is left unserved; those stay
and mix with the fresh activations written into the served slots at the next refill.
Every activation is served exactly once. With ``mixing_fraction = 0`` nothing is kept
back and nothing is shuffled: activations come out in the order they went in.

Refilling writes into the freed slots in place, so the pool never needs a second copy
of itself. Each slot also records an integer *origin* chosen by the caller (where the
activation came from); a saved state holds origins, not activations, and the caller
recomputes the activations on resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

EMPTY = -1


class MixingBuffer:
    def __init__(self, capacity: int, d_in: int, *, mixing_fraction: float, device: torch.device, seed: int) -> None:
        self.capacity = capacity
        self.mixing_fraction = mixing_fraction
        self.servable = capacity - int(capacity * mixing_fraction)
        self.device = device
        self.slots = torch.zeros(capacity, d_in, dtype=torch.float32, device=device)
        self.origins = torch.full((capacity,), EMPTY, dtype=torch.long)
        self.order = torch.arange(capacity)
        self.served = capacity
        self.generator = torch.Generator().manual_seed(seed)
        self.carry_activations: torch.Tensor | None = None
        self.carry_origins = torch.zeros(0, dtype=torch.long)
        self._order_on_device = self.order.to(device)

    def can_serve(self, batch_size: int) -> bool:
        return self.served + batch_size <= self.servable

    def take(self, batch_size: int) -> torch.Tensor:
        """The next ``batch_size`` activations along this cycle's order."""
        indices = self._order_on_device[self.served:self.served + batch_size]
        self.served += batch_size
        return self.slots.index_select(0, indices)

    def refill(self, chunks: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Write fresh activations into every served slot, then start a new cycle.

        ``chunks`` yields ``(activations [n, d_in], origins [n])``; what does not fit is
        carried over to the next refill.
        """
        free = self.order[:self.served]
        filled = 0
        while filled < len(free):
            if self.carry_activations is not None:
                activations, origins = self.carry_activations, self.carry_origins
                self.carry_activations, self.carry_origins = None, torch.zeros(0, dtype=torch.long)
            else:
                activations, origins = next(chunks)
            count = min(len(origins), len(free) - filled)
            target = free[filled:filled + count]
            self.slots[target.to(self.device)] = activations[:count].to(self.device, torch.float32)
            self.origins[target] = origins[:count]
            if count < len(origins):
                self.carry_activations, self.carry_origins = activations[count:], origins[count:]
            filled += count
        if self.mixing_fraction > 0:
            order = torch.randperm(self.capacity, generator=self.generator)
        else:
            order = torch.cat([self.order[self.served:], free])
        self._start_cycle(order, served=0)

    def _start_cycle(self, order: torch.Tensor, served: int) -> None:
        self.order = order
        self.served = served
        self._order_on_device = order.to(self.device)

    def live_origins(self) -> torch.Tensor:
        """Each slot's origin, with slots already served this cycle marked EMPTY."""
        origins = self.origins.clone()
        origins[self.order[:self.served]] = EMPTY
        return origins

    def state_dict(self) -> dict[str, Any]:
        return {
            "origins": self.live_origins(),
            "order": self.order.clone(),
            "served": self.served,
            "generator": self.generator.get_state().clone(),
            "carry_origins": self.carry_origins.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore positions and origins; the caller then writes the activations back."""
        self.origins = state["origins"].clone().long()
        self.generator.set_state(state["generator"])
        self.carry_origins = state["carry_origins"].clone().long()
        self.carry_activations = None
        self.slots.zero_()
        self._start_cycle(state["order"].clone().long(), served=int(state["served"]))
