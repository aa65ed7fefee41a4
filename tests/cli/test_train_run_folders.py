"""`saecore train` and its folders, with real processes: bad paths, concurrent runs, Ctrl-C, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from saecore.training.run_lock import LOCK_FILENAME

SMALL_RUN = ["--arch", "standard", "--training-tokens", "20480", "--d-sae", "128", "--n-eval-batches", "2"]
LONG_RUN = ["--arch", "standard", "--training-tokens", "50000000", "--train-batch-size-tokens", "64",
            "--d-sae", "32", "--n-checkpoints", "5000", "--n-eval-batches", "1"]


def saecore_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "saecore", *args], capture_output=True, text=True, cwd=cwd)


def start_long_run(output: Path, log: Path) -> tuple[subprocess.Popen[str], Path]:
    """A run that trains for minutes, once it is past its first checkpoint (so inside the step loop).

    Its output goes to ``log`` (a pipe nobody reads would fill and stall it).
    """
    checkpoints = output / "checkpoints"
    with log.open("w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "saecore", "train", *LONG_RUN, "--output-path", str(output)],
                                   stdout=sink, stderr=sink, text=True)
    deadline = time.monotonic() + 240
    while not (checkpoints.is_dir() and any(not p.name.startswith(".") for p in checkpoints.iterdir())):
        if process.poll() is not None:
            raise AssertionError(f"the long run ended early: {log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the long run wrote no checkpoint in 240 s")
        time.sleep(0.2)
    return process, checkpoints


def test_an_output_path_that_is_a_file_fails_at_once_in_one_line(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("x")
    result = saecore_cli("train", *SMALL_RUN, "--output-path", str(taken))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f"saecore: error: output_path={str(taken)!r}: {str(taken)!r} is a file, not a folder; give a folder path"
    )
    assert "Trained on" not in result.stdout


def test_two_runs_started_together_get_their_own_default_folders(tmp_path: Path) -> None:
    runs = [subprocess.Popen([sys.executable, "-m", "saecore", "train", *SMALL_RUN], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.communicate()
    saved = sorted((tmp_path / "saecore_runs").glob("standard-*/cfg.json"))
    assert len(saved) == 2, saved


def test_a_second_run_on_a_folder_in_use_fails_at_once_naming_the_first_and_ctrl_c_names_the_flag(
    tmp_path: Path,
) -> None:
    output = tmp_path / "run"
    log = tmp_path / "first.log"
    first, checkpoints = start_long_run(output, log)
    try:
        second = saecore_cli("train", *SMALL_RUN, "--output-path", str(output))
        assert second.returncode == 1
        assert f"output_path={str(output)!r} is in use by another run (pid {first.pid})" in second.stderr
        other_output = saecore_cli("train", *SMALL_RUN, "--output-path", str(tmp_path / "other"),
                                   "--checkpoint-path", str(checkpoints))
        assert f"checkpoint_path={str(checkpoints)!r} is in use by another run (pid {first.pid})" in other_output.stderr
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
    finally:
        first.kill()
    stderr = log.read_text()
    assert first.returncode == 130, stderr
    assert "--resume-from-checkpoint " + str(checkpoints) in stderr
    assert "resume_from_checkpoint=" not in stderr
    assert not list(output.rglob(LOCK_FILENAME)), "an interrupted run releases its folders"


def test_the_folder_of_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    output = tmp_path / "run"
    killed, _ = start_long_run(output, tmp_path / "killed.log")
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert (output / LOCK_FILENAME).read_text().strip() == str(killed.pid), "the dead run's lock file is left"
    result = saecore_cli("train", *SMALL_RUN, "--output-path", str(output))
    assert result.returncode == 0, result.stderr
    assert (output / "cfg.json").is_file() and not (output / LOCK_FILENAME).exists()
