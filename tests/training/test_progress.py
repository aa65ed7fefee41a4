"""Progress output: a tqdm bar on a terminal, plain lines in a log file, silence when not verbose."""

from __future__ import annotations

import io
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
