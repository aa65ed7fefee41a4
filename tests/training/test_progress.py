"""Progress output: a tqdm bar on a terminal, plain lines in a log file, silence when not verbose."""

from __future__ import annotations

import fcntl
import io
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from saecore_sae_standard.standard_sae import StandardTrainingSAEConfig
from training_helpers import make_config

from saecore.training import LoggingConfig, TrainingRunner
from saecore.training.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _feed(progress: Progress, steps: int, tokens_per_step: int) -> None:
    for step in range(1, steps + 1):
        progress.update(step=step, n_tokens=step * tokens_per_step, loss=1.0 / step, l0=3.5, explained_variance=0.75)
    progress.close()


def test_log_file_gets_plain_lines_every_tenth_of_the_run() -> None:
    stream = io.StringIO()
    _feed(Progress(total_tokens=1000, total_steps=100, stream=stream), steps=100, tokens_per_step=10)
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("step 10/100 | 100/1,000 tokens (10%) | loss 0.1 | L0 3.5 | EV 0.750 |")
    assert lines[-1].startswith("step 100/100 | 1,000/1,000 tokens (100%)")


def test_log_file_gets_the_last_line_even_off_the_interval() -> None:
    stream = io.StringIO()
    _feed(Progress(total_tokens=1000, total_steps=100, stream=stream), steps=15, tokens_per_step=10)
    assert [line.split(" |")[0] for line in stream.getvalue().splitlines()] == ["step 10/100", "step 15/100"]


def test_terminal_gets_a_tqdm_bar_with_the_metrics() -> None:
    stream = FakeTerminal()
    progress = Progress(total_tokens=1000, total_steps=100, stream=stream)
    progress.write("checkpoint written: somewhere")
    _feed(progress, steps=100, tokens_per_step=10)
    text = stream.getvalue()
    assert "\r" in text
    assert "Training SAE" in text and "loss=0.01" in text and "L0=3.5" in text and "EV=0.750" in text
    assert "checkpoint written: somewhere" in text


def test_disabled_progress_prints_nothing() -> None:
    stream = FakeTerminal()
    progress = Progress(total_tokens=10, total_steps=1, stream=stream, enabled=False)
    progress.write("hello")
    _feed(progress, steps=1, tokens_per_step=10)
    assert stream.getvalue() == ""


def test_runner_reports_progress_to_a_log_stream(tmp_path: Path) -> None:
    stream = io.StringIO()
    cfg = make_config(tmp_path, verbose=True, logger=LoggingConfig(wandb_log_frequency=4), n_checkpoints=1)
    TrainingRunner(cfg, progress_stream=stream).run()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert any(line.startswith("step 40/40 | 1,280/1,280 tokens (100%) | loss ") for line in lines)
    assert f"checkpoint written: {tmp_path / 'checkpoints' / str(20 * 32)}" in lines


def test_runner_is_silent_when_not_verbose(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    sae = StandardTrainingSAEConfig(d_in=8, d_sae=16, normalize_activations="expected_average_only_in")
    cfg = make_config(tmp_path, n_checkpoints=1, sae=sae)
    TrainingRunner(cfg).run()
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("", "")


def _run_on_a_pty(args: list[str], columns: int, lines: int, cwd: Path | None = None) -> tuple[str, str]:
    """Run ``python args`` with stderr on a pty of this size; return (stdout, what the terminal showed)."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=terminal, cwd=cwd,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    os.close(terminal)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    stdout = process.stdout.read().decode() if process.stdout is not None else ""
    assert process.wait() == 0, shown.decode(errors="replace")
    return stdout, shown.decode(errors="replace")


STOPS_SHORT = """
from saecore.training.progress import Progress
import sys
progress = Progress(total_tokens=400_000, total_steps=98, stream=sys.stderr)
for step in range(10, 98, 10):
    progress.update(step=step, n_tokens=step * 4096, loss=0.5, l0=8.0, explained_variance=0.9)
progress.finish(step=98, n_tokens=400_000, elapsed_seconds=75.4)
"""


@pytest.mark.parametrize(("columns", "lines"), [(0, 0), (0, 24), (80, 0), (120, 40)])
def test_terminal_bar_ends_at_the_run_end_whatever_the_terminal_size(columns: int, lines: int) -> None:
    _, shown = _run_on_a_pty(["-c", STOPS_SHORT], columns, lines)
    final = shown.replace("\r\n", "\n").split("\r")[-1]
    assert "Training SAE: 100%" in final and "400k/400k" in final, repr(shown)
    assert "[01:15<" in final, repr(final)


def test_plain_lines_end_at_the_run_end_with_the_run_time() -> None:
    stream = io.StringIO()
    progress = Progress(total_tokens=1000, total_steps=100, stream=stream)
    for step in range(10, 100, 10):
        progress.update(step=step, n_tokens=step * 10, loss=0.5, l0=3.0, explained_variance=0.5)
    progress.finish(step=97, n_tokens=970, elapsed_seconds=12.34)
    assert stream.getvalue().splitlines()[-1].startswith("step 97/100 | 970/1,000 tokens (97%) | loss 0.5")
    assert stream.getvalue().splitlines()[-1].endswith("| 12.3 s")


def test_training_run_on_a_terminal_reaches_100_percent_at_the_summary_time(tmp_path: Path) -> None:
    """98 steps logged every 10: the bar used to stop at the 90th step's tokens."""
    stdout, shown = _run_on_a_pty(
        ["-m", "saecore", "train", "--arch", "standard", "--training-tokens", "401408", "--d-sae", "128",
         "--train-batch-size-tokens", "4096", "--wandb-log-frequency", "10", "--n-eval-batches", "1",
         "--output-path", "null"], columns=0, lines=0, cwd=tmp_path)
    final = shown.replace("\r\n", "\n").split("\r")[-1]
    assert "Training SAE: 100%" in final and "401k/401k" in final, repr(shown)
    minutes, seconds = map(int, re.search(r"\[(\d+):(\d+)<", final).groups())  # type: ignore[union-attr]
    summary_seconds = float(re.search(r"tokens in ([\d.]+) s", stdout).group(1))  # type: ignore[union-attr]
    assert abs(60 * minutes + seconds - summary_seconds) <= 1.0
