"""The folders a run writes: named uniquely, claimed and checked before the first step.

A path that cannot be written (a file in the way, a read-only folder, a full disk, a
folder another run holds) fails the run before it trains rather than after, when the
result would be lost. Checkpoint writes that were killed midway leave hidden
``.{name}.{random}.partial`` (and ``.{name}.old``) folders; they are removed once this
run holds the checkpoint folder, so no other run can be writing them.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from saecore.errors import ConfigError
from saecore.training.run_lock import RunFolderLock

RUNS_FOLDER = "saecore_runs"
METADATA_BYTES = 1 << 20
"""Room kept for cfg.json, runner_cfg.json and the files' headers beside the tensors."""
ADAM_COPIES = 3
"""A checkpoint holds the weights and Adam's two moment estimates of the same shapes."""
STALE_WRITE = re.compile(r"^\..+\.(partial|old)$")


def default_run_folder(name: str) -> Path:
    """``saecore_runs/{name}-{time}-{suffix}``: readable, and unique even for runs started in one second.

    Under torchrun every rank must name the same folder, so the suffix comes from the job
    (its run id and rendezvous address) instead of from chance.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        job = "-".join(os.environ.get(key, "") for key in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT"))
        return Path(RUNS_FOLDER) / f"{name}-torchrun-{zlib.crc32(job.encode()) & 0xFFFFFF:06x}"
    return Path(RUNS_FOLDER) / f"{name}-{stamp}-{secrets.token_hex(3)}"


def claim_folder(folder: Path, what: str) -> RunFolderLock:
    """Create ``folder`` if needed and lock it for this run, or raise an error that names it and why."""
    try:
        return RunFolderLock(folder, what)
    except (FileExistsError, NotADirectoryError):
        blocker = next((parent for parent in (folder, *folder.parents) if parent.exists()), folder)
        raise ConfigError(
            f"{what}={str(folder)!r}: {str(blocker)!r} is a file, not a folder; give a folder path"
        ) from None
    except OSError as error:
        raise ConfigError(
            f"{what}={str(folder)!r} cannot be written ({error.strerror or error}); give a folder this user can write"
        ) from None


def claim_folders(folders: Iterable[tuple[Path, str]]) -> list[RunFolderLock]:
    """Claim each distinct folder once, in order; on a failure, release the ones already claimed."""
    locks: list[RunFolderLock] = []
    seen: set[Path] = set()
    try:
        for folder, what in folders:
            key = folder.absolute()
            if key not in seen:
                seen.add(key)
                locks.append(claim_folder(folder, what))
    except BaseException:
        release_folders(locks)
        raise
    return locks


def release_folders(locks: list[RunFolderLock]) -> None:
    """Release in reverse order, so a nested folder goes before the folder holding it."""
    for lock in reversed(locks):
        lock.release()


def remove_stale_writes(checkpoint_folder: Path) -> list[Path]:
    """Remove the unfinished checkpoint writes of killed runs (call only while holding the folder)."""
    removed = []
    checkpoints = [child for child in _subfolders(checkpoint_folder) if not is_stale_write(child)]
    for parent in (checkpoint_folder, *checkpoints):
        for child in _subfolders(parent):
            if STALE_WRITE.match(child.name):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def is_stale_write(folder: Path) -> bool:
    """Whether ``folder`` is an unfinished checkpoint write (never a checkpoint to resume from)."""
    return STALE_WRITE.match(folder.name) is not None


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [child for child in folder.iterdir() if child.is_dir() and not child.is_symlink()]
    except OSError:
        return []


def state_bytes(module: Any) -> int:
    """Bytes of a module's tensors as saved (parameters and buffers)."""
    return sum(tensor.numel() * tensor.element_size() for tensor in module.state_dict().values())


def free_bytes(folder: Path) -> int:
    """Free bytes on the filesystem of ``folder`` (or of its nearest existing parent)."""
    existing = next((parent for parent in (folder, *folder.parents) if parent.exists()), Path("."))
    return shutil.disk_usage(existing).free


def require_free_space(folder: Path, needed: int, what: str) -> None:
    """Raise an ``OSError(ENOSPC)`` naming ``folder`` when its filesystem has less than ``needed`` bytes free."""
    free = free_bytes(folder)
    if free < needed:
        raise OSError(errno.ENOSPC, f"{what} needs {format_bytes(needed)} but only {format_bytes(free)} is free on "
                                    f"the filesystem of {folder}")


def format_bytes(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 2**10:.1f} KiB"
