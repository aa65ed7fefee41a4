"""Training progress for people: a tqdm bar on a terminal, plain lines in a log file.

A bar redraws itself with carriage returns, which turns a log file into one enormous
line; when the stream is not a terminal, one self-contained line is printed every 10% of
the run (or every minute on slow runs) instead. Both show tokens, loss, L0 and explained
variance of the latest logged step. ``enabled=False`` prints nothing at all.

Metrics arrive only on logged steps, so the trainer calls ``finish`` after the last step:
the display then ends at the tokens actually trained and at the same elapsed time as the
run's summary. A terminal that reports a zero width or height (a pty nobody sized) gets a
bar of a standard size rather than none.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


STANDARD_TERMINAL_SIZE = os.terminal_size((80, 24))


def _fixed_size(stream: TextIO) -> dict[str, Any]:
    """tqdm's size arguments: follow the terminal, or a standard size where it reports zero."""
    try:
        columns, lines = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return {"dynamic_ncols": True}
    if columns > 0 and lines > 0:
        return {"dynamic_ncols": True}
    return {"ncols": columns or STANDARD_TERMINAL_SIZE.columns, "nrows": lines or STANDARD_TERMINAL_SIZE.lines}


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
        self._latest_metrics = ""
        self._bar: tqdm | None = None
        if enabled and _is_terminal(self.stream):
            self._bar = tqdm(
                total=total_tokens, initial=initial_tokens, unit="tok", unit_scale=True,
                desc="Training SAE", file=self.stream, mininterval=0.5, **_fixed_size(self.stream),
            )

    def update(self, *, step: int, n_tokens: int, loss: float, l0: float, explained_variance: float) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss={loss:.4g} L0={l0:.1f} EV={explained_variance:.3f}", refresh=False)
            self._bar.update(n_tokens - self._bar.n)
            return
        now = time.perf_counter()
        self._latest_metrics = f"loss {loss:.4g} | L0 {l0:.1f} | EV {explained_variance:.3f}"
        line = self._line(step, n_tokens, now - self._start_time)
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

    def finish(self, *, step: int, n_tokens: int, elapsed_seconds: float) -> None:
        """The run's last step: show its tokens and ``elapsed_seconds`` (the summary's time), then close."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.n = n_tokens
            self._bar.start_t = self._bar.last_print_t = time.time() - elapsed_seconds
            self.close()
            return
        if self._latest_metrics and n_tokens > self._last_line_tokens:
            self._print(self._line(step, n_tokens, elapsed_seconds))
        self._pending_line = None
        self._last_line_tokens = n_tokens

    def close(self) -> None:
        """Finish the bar, or print the latest line if the last interval was not printed."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._pending_line is not None:
            self._print(self._pending_line)
            self._pending_line = None

    def _line(self, step: int, n_tokens: int, elapsed_seconds: float) -> str:
        rate = (n_tokens - self._start_tokens) / max(elapsed_seconds, 1e-9)
        return (
            f"step {step}/{self.total_steps} | {n_tokens:,}/{self.total_tokens:,} tokens "
            f"({100 * n_tokens / self.total_tokens:.0f}%) | {self._latest_metrics} | {rate:,.0f} tokens/s | "
            f"{elapsed_seconds:.1f} s"
        )

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
