"""batch_to_device off CUDA: the plain copy, with the dtype asked for (tests/gpu checks the pinned route)."""

from __future__ import annotations

import torch

from saecore.sources.device_copy import batch_to_device


def test_on_the_cpu_it_is_a_plain_copy_to_the_dtype_asked_for() -> None:
    rows = torch.arange(12, dtype=torch.float16).reshape(3, 4)
    moved = batch_to_device(rows, "cpu", torch.float32)
    assert moved.dtype == torch.float32 and torch.equal(moved, rows.float())
    assert batch_to_device(rows, torch.device("cpu")) is rows
    assert batch_to_device(rows, "meta", torch.float32).device.type == "meta"
