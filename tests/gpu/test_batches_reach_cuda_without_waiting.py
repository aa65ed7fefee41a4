"""Batches built in host memory reach CUDA without the host waiting for the device."""

from __future__ import annotations

import torch
from cuda_runs import needs_cuda

from saecore.sources.device_copy import batch_to_device
from saecore.sources.in_memory import TensorSource, TensorSourceConfig

pytestmark = needs_cuda


def test_a_host_batch_is_copied_to_cuda_without_a_synchronising_call() -> None:
    rows = torch.randn(256, 32, dtype=torch.float16)
    source = TensorSource(TensorSourceConfig(data=rows, shuffle=False), device="cuda")
    busy = torch.randn(2048, 2048, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # a synchronising CUDA call raises
    try:
        for _ in range(8):
            busy = busy @ busy / 2048  # keeps the device busy while the copies are queued
        moved = batch_to_device(rows, "cuda", torch.float32)
        served = source.next_batch(256)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert moved.device.type == served.device.type == "cuda"
    assert torch.equal(moved.cpu(), rows.float()) and torch.equal(served.cpu(), rows.float())
