"""Training progress for people: a tqdm bar on a terminal, plain lines in a log file.

A bar redraws itself with carriage returns, which turns a log file into one enormous
line; when the stream is not a terminal, one self-contained line is printed every 10% of
the run (or every minute on slow runs) instead. Both show tokens, loss, L0 and explained
variance of the latest logged step. ``enabled=False`` prints nothing at all.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm.auto import tqdm


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    def __init__(
        self,
        *,
        total_tokens: int,
        total_steps: int,
        initial_tokens: int = 0,
        enabled: bool = True,
        stream: TextIO | None = None,
        line_every_fraction: float = 0.1,
        line_every_seconds: float = 60.0,
    ) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.total_tokens = total_tokens
        self.total_steps = total_steps
        self.line_every_fraction = line_every_fraction
        self.line_every_seconds = line_every_seconds
        self._start_time = time.perf_counter()
        self._start_tokens = initial_tokens
        self._last_line_tokens = initial_tokens
        self._last_line_time = self._start_time
        self._pending_line: str | None = None
        self._bar: tqdm | None = None
        if enabled and _is_terminal(self.stream):
            self._bar = tqdm(
                total=total_tokens, initial=initial_tokens, unit="tok", unit_scale=True,
                desc="Training SAE", file=self.stream, dynamic_ncols=True, mininterval=0.5,
            )

    def update(self, *, step: int, n_tokens: int, loss: float, l0: float, explained_variance: float) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss={loss:.4g} L0={l0:.1f} EV={explained_variance:.3f}", refresh=False)
            self._bar.update(n_tokens - self._bar.n)
            return
        now = time.perf_counter()
        rate = (n_tokens - self._start_tokens) / max(now - self._start_time, 1e-9)
        line = (
            f"step {step}/{self.total_steps} | {n_tokens:,}/{self.total_tokens:,} tokens "
            f"({100 * n_tokens / self.total_tokens:.0f}%) | loss {loss:.4g} | L0 {l0:.1f} | "
            f"EV {explained_variance:.3f} | {rate:,.0f} tokens/s"
        )
        due_by_progress = n_tokens - self._last_line_tokens >= self.line_every_fraction * self.total_tokens
        due_by_time = now - self._last_line_time >= self.line_every_seconds
        if due_by_progress or due_by_time:
            self._print(line)
            self._last_line_tokens, self._last_line_time = n_tokens, now
            self._pending_line = None
        else:
            self._pending_line = line

    def write(self, message: str) -> None:
        """A one-off message (checkpoint written, scale estimated) that does not break the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            self._print(message)

    def close(self) -> None:
        """Finish the bar, or print the latest line if the last interval was not printed."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._pending_line is not None:
            self._print(self._pending_line)
            self._pending_line = None

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
