"""A run's claim on a folder it writes: one run per output or checkpoint folder at a time.

Two runs writing one folder would overwrite each other's SAE and mix their checkpoints,
each believing it succeeded. A run therefore holds an exclusive ``flock`` on
``{folder}/.saecore.lock`` (the file holds its pid) from before its first step until it
ends. The kernel drops the lock when its process dies, however it dies, so a lock file
left behind by a killed run is simply taken over; a second live run fails at once,
naming the pid of the run that holds the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from saecore.errors import SaecoreError

LOCK_FILENAME = ".saecore.lock"


class RunFolderBusyError(SaecoreError):
    """Another live run holds the folder."""

    def __init__(self, folder: Path, what: str, holder: str) -> None:
        self.folder = folder
        self.holder = holder
        super().__init__(
            f"{what}={str(folder)!r} is in use by another run (pid {holder}); wait for it to finish, "
            f"or give this run another {what}"
        )


class RunFolderLock:
    """The exclusive claim on ``folder`` (created if missing); ``release()`` gives it up.

    The folders this lock created (``folder`` and any missing parents) that hold nothing
    else when it is released are removed, so a run that fails before writing leaves no
    empty folders behind.
    """

    def __init__(self, folder: Path, what: str) -> None:
        self.folder = folder
        self.what = what
        self.created: list[Path] = []
        for path in (folder, *folder.parents):
            if path.exists():
                break
            self.created.append(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOCK_FILENAME
        self._fd = self._acquire()

    def _acquire(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunFolderBusyError(self.folder, self.what, holder) from None
            # The holder before us may have removed the file between our open and our lock:
            # then we hold a lock on a name nobody else sees; start again on the current file.
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
            os.close(fd)

    def release(self) -> None:
        """Remove the lock file, drop the lock, and remove the folder if this lock made it and it is empty."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):  # the folder may be gone or replaced; the lock still goes
            self.path.unlink()
        os.close(self._fd)
        self._fd = -1
        for path in self.created:  # innermost first; rmdir only removes an empty folder
            try:
                path.rmdir()
            except OSError:
                return
