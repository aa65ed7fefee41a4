"""Checking, before allocating it, that the mixing buffer fits in the device's free memory."""

from __future__ import annotations

from pathlib import Path

import torch

from saecore.errors import ConfigError

MEMINFO = Path("/proc/meminfo")


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (None where it cannot be measured)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    if MEMINFO.is_file():
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def check_fits(n_bytes: int, device: torch.device, what: str, *, remedy: str) -> str:
    """A one-line description of the allocation; ConfigError when it cannot fit."""
    free = available_bytes(device)
    free_text = "free memory unknown" if free is None else f"{free / 1e9:.2f} GB available"
    line = f"{what}: {n_bytes / 1e9:.3f} GB on {device} ({free_text})"
    if free is not None and n_bytes > free:
        raise ConfigError(f"{what} needs {n_bytes / 1e9:.2f} GB on {device} but only {free / 1e9:.2f} GB is "
                          f"available; {remedy}")
    return line
