"""Moving a batch from host memory to the training device without waiting for the device.

A copy to CUDA from ordinary (pageable) host memory makes the host wait until the device
has finished every kernel queued before it, so each training step would start only once
the previous one had drained the queue, and the device would idle while the host queued
the next. From pinned memory the copy joins the queue instead (``non_blocking``), and the
host goes on queueing the step; torch's pinned-memory cache keeps the pinned copy until
the transfer has run.
"""

from __future__ import annotations

import torch


def batch_to_device(rows: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``rows`` on ``device`` (as ``dtype`` if given); from the CPU to CUDA through pinned memory, without waiting."""
    target = torch.device(device)
    if rows.device.type == "cpu" and target.type == "cuda":
        host = rows if dtype is None else rows.to(dtype)
        return host.pin_memory().to(target, non_blocking=True)
    return rows.to(target, dtype) if dtype is not None else rows.to(target)
