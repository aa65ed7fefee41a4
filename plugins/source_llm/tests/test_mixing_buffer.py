"""The mixing buffer: each activation served exactly once, shuffling by seed, FIFO without mixing, exact resume."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from saecore_source_llm.mixing_buffer import EMPTY, MixingBuffer

CHUNK = 12  # does not divide the capacity, so chunks are split across refills


def numbered_chunks(start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Activation i is the vector [i, -i]: its value says where it came from."""
    first = start
    while True:
        origins = torch.arange(first, first + CHUNK)
        yield torch.stack([origins, -origins], dim=1).float(), origins
        first += CHUNK


def serve(buffer: MixingBuffer, chunks: Iterator[tuple[torch.Tensor, torch.Tensor]], batch: int) -> list[int]:
    if not buffer.can_serve(batch):
        buffer.refill(chunks)
    values = buffer.take(batch)
    assert torch.equal(values[:, 1], -values[:, 0])
    return [int(v) for v in values[:, 0]]


def test_each_activation_is_served_once_and_the_mixing_fraction_stays_behind() -> None:
    buffer = MixingBuffer(64, 2, mixing_fraction=0.5, device=torch.device("cpu"), seed=0)
    chunks = numbered_chunks()
    first_cycle = [i for _ in range(4) for i in serve(buffer, chunks, 8)]
    assert len(set(first_cycle)) == 32 and set(first_cycle) <= set(range(64))
    assert not buffer.can_serve(8)  # 32 of 64 stay behind to mix with the next refill
    served = first_cycle + [i for _ in range(40) for i in serve(buffer, chunks, 8)]
    assert len(served) == len(set(served))
    produced = buffer.origins.max().item() + 1 + len(buffer.carry_origins)
    in_buffer = set(buffer.live_origins().tolist()) - {EMPTY}
    assert set(served) | in_buffer | set(buffer.carry_origins.tolist()) == set(range(produced))
    assert served != sorted(served)


def test_without_mixing_activations_come_out_in_order() -> None:
    buffer = MixingBuffer(40, 2, mixing_fraction=0.0, device=torch.device("cpu"), seed=0)
    chunks = numbered_chunks()
    served = [i for _ in range(20) for i in serve(buffer, chunks, 6)]
    assert served == list(range(120))


def test_the_seed_decides_the_order() -> None:
    def run(seed: int) -> list[int]:
        buffer = MixingBuffer(48, 2, mixing_fraction=0.25, device=torch.device("cpu"), seed=seed)
        chunks = numbered_chunks()
        return [i for _ in range(12) for i in serve(buffer, chunks, 8)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_a_restored_buffer_continues_exactly() -> None:
    original = MixingBuffer(48, 2, mixing_fraction=0.5, device=torch.device("cpu"), seed=5)
    chunks = numbered_chunks()
    for _ in range(9):
        serve(original, chunks, 8)
    state = original.state_dict()
    next_origin = int(torch.cat([original.origins, original.carry_origins]).max()) + 1
    expected = [i for _ in range(15) for i in serve(original, chunks, 8)]

    restored = MixingBuffer(48, 2, mixing_fraction=0.5, device=torch.device("cpu"), seed=0)
    restored.load_state_dict(state)
    live = restored.origins != EMPTY
    restored.slots[live] = torch.stack([restored.origins[live], -restored.origins[live]], dim=1).float()
    if len(restored.carry_origins):
        carry = restored.carry_origins
        restored.carry_activations = torch.stack([carry, -carry], dim=1).float()
    fresh_chunks = numbered_chunks(next_origin)
    resumed = [i for _ in range(15) for i in serve(restored, fresh_chunks, 8)]
    assert resumed == expected
