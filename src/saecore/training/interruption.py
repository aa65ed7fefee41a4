"""Turn SIGINT/SIGTERM into a request the step loop honours between steps.

The handler only records the signal: stopping mid-step would leave the optimizer and
the weights out of step with each other. The loop checks the request after each step,
writes a checkpoint and stops. A second SIGINT while that is under way raises
KeyboardInterrupt at once (the checkpoint folder is written atomically, so nothing
half-written is left). Handlers can only be installed from the main thread; elsewhere
(a notebook worker, a test thread) training runs without them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Which signal asked training to stop, if any."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal_number).name if self.signal_number is not None else ""

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if self.requested and signal_number == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_number = signal_number


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Install the handlers for the duration of the block, then restore the previous ones."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {number: signal.getsignal(number) for number in HANDLED_SIGNALS}
    for number in HANDLED_SIGNALS:
        signal.signal(number, request._handle)
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
