"""Running an iterator ahead in a background thread, so producing overlaps consuming.

The llm source uses it to run the language model while the trainer's SAE step runs:
torch releases the GIL inside its ops, so on a GPU the two fill different engines and on
a CPU they share the cores. Items come out in exactly the order the iterator yields
them, so what the consumer sees does not depend on timing.

A prefetcher nobody closed is closed at interpreter exit: a daemon thread still inside a
torch op when the interpreter finalizes aborts the process ("terminate called without an
active exception"), so a script that forgets ``source.close()`` would die with SIGABRT.
"""

from __future__ import annotations

import atexit
import queue
import threading
import weakref
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_POLL_SECONDS = 0.1

_running: weakref.WeakSet[Prefetcher[object]] = weakref.WeakSet()


@atexit.register
def _close_running_prefetchers() -> None:
    for prefetcher in list(_running):
        prefetcher.close()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _End:
    pass


class Prefetcher(Generic[T]):
    """Yields ``items``' values, keeping up to ``size`` ready; the thread starts at the first ``next``.

    An exception raised by ``items`` is raised again by the ``next`` that reaches it.
    ``close()`` stops the thread (after the item it is producing) and drops what is queued.
    """

    def __init__(self, items: Iterator[T], size: int, name: str) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self._items = items
        self._queue: queue.Queue[T | _Failure | _End] = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if not self._started:
            self._started = True
            _running.add(self)
            self._thread.start()
        item = self._queue.get()
        if isinstance(item, _Failure):
            raise item.error
        if isinstance(item, _End):
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            self._drain()
            self._thread.join(_POLL_SECONDS)
        self._drain()
        _running.discard(self)

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            self._put(_Failure(error))
            return
        self._put(_End())

    def _put(self, item: T | _Failure | _End) -> bool:
        """Queue ``item`` unless asked to stop first; returns whether it was queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False
